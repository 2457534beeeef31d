"""Hot keys as encrypted keystores (KeyRef.keystore), raw keys only with allow_raw, and
`relay keys import` that converts one into the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from solders.keypair import Keypair

from adapters.evm.gateway import evm_key
from adapters.solana.rpc import keypair_from_ref
from relay.cli import main
from relay.config import KeyRef, allow_raw_keys, load_config, parse_config, raw_key_problems
from relay.errors import ConfigError

EVM_KEY = "0x" + "4c" * 32


def _config_file(tmp_path: Path, signer: str, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[chains.evm]
kind = "evm"
domain = 31337
chain_id = 31337
rpc_urls = ["http://127.0.0.1:1"]
signer = {signer}
{extra}
""")
    return path


def _import(tmp_path: Path, kind: str, key_text: str, name: str) -> tuple[Path, Path]:
    key_file, password_file, out = tmp_path / f"{name}.raw", tmp_path / f"{name}.pw", tmp_path / f"{name}.json"
    key_file.write_text(key_text)
    password_file.write_text("correct horse\n")
    assert main(["keys", "import", "--kind", kind, "--key-file", str(key_file), "--out", str(out),
                 "--password-file", str(password_file)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    return out, password_file


def test_keyref_shapes():
    assert KeyRef(keystore=Path("k.json"), password_env="PW").describe() == "keystore k.json"
    for bad, message in (
        ({}, "exactly one of `file` or `env`"),
        ({"file": "a", "keystore": "b", "password_env": "P"}, "exactly one of"),
        ({"keystore": "k.json"}, "needs exactly one of `password_file` or `password_env`"),
        ({"keystore": "k.json", "password_env": "P", "password_file": "p"}, "exactly one of `password_file`"),
        ({"keystore": "k.json", "password_env": "P", "allow_raw": True}, "allow_raw is for unencrypted keys"),
        ({"file": "k", "password_file": "p"}, "unlock a keystore"),
    ):
        with pytest.raises(ValueError, match=message):
            KeyRef(**bad)


def test_raw_key_needs_the_opt_in_naming_the_field_and_the_command(tmp_path):
    (tmp_path / "relayer.key").write_text(EVM_KEY)
    path = _config_file(tmp_path, '{ file = "relayer.key" }')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "chains.evm.signer: file" in text and "unencrypted key" in text
    assert "relay keys import --kind evm --key-file" in text and "allow_raw = true" in text
    # `relay config check` loads without refusing and lists it with the other problems.
    assert raw_key_problems(load_config(path, check_keys=False))
    # With the opt-in it loads.
    config = load_config(_config_file(tmp_path, '{ file = "relayer.key", allow_raw = true }'))
    assert evm_key(config.chains["evm"].signer, "chains.evm.signer") == EVM_KEY


def test_allow_raw_keys_marks_every_unencrypted_key():
    config = parse_config({
        "chains": {"evm": {"kind": "evm", "domain": 1, "chain_id": 1, "rpc_urls": ["http://x"], "signer": {"env": "K"},
                           "sender": {"keystore": "k.json", "password_env": "P"}}},
        "worker": {"evm_key": {"file": "w.key"}, "solana_keypair": {"file": "w.json"}},
        "feed_push": {"evm_key": {"env": "PUSH"}},
    })
    assert len(raw_key_problems(config)) == 4
    opted = allow_raw_keys(config)
    assert raw_key_problems(opted) == []
    assert opted.chains["evm"].sender == config.chains["evm"].sender  # a keystore is left as it is


def test_evm_keystore_round_trip_through_the_config(tmp_path):
    out, password_file = _import(tmp_path, "evm", EVM_KEY + "\n", "relayer")
    keystore = json.loads(out.read_text())
    assert keystore["version"] == 3 and keystore["crypto"]["kdf"] == "scrypt"
    assert keystore["address"].lower() == Account.from_key(EVM_KEY).address[2:].lower()
    config = load_config(_config_file(tmp_path, f'{{ keystore = "{out.name}", password_file = "{password_file.name}" }}'))
    ref = config.chains["evm"].signer
    assert ref.keystore == out and raw_key_problems(config) == []  # paths resolve from the config's folder
    assert evm_key(ref, "chains.evm.signer") == EVM_KEY
    password_file.write_text("wrong")
    with pytest.raises(ConfigError, match=r"chains\.evm\.signer \(keystore .*\) cannot be decrypted"):
        evm_key(ref, "chains.evm.signer")


def test_solana_keystore_round_trip(tmp_path, monkeypatch):
    keypair = Keypair()
    out, password_file = _import(tmp_path, "solana", json.dumps(list(bytes(keypair))), "payer")
    keystore = json.loads(out.read_text())
    assert keystore["solana_pubkey"] == str(keypair.pubkey()) and "address" not in keystore
    monkeypatch.setenv("PAYER_PW", "correct horse")
    ref = KeyRef(keystore=out, password_env="PAYER_PW")
    assert keypair_from_ref(ref, "chains.sol.signer").pubkey() == keypair.pubkey()
    keystore["solana_pubkey"] = str(Keypair().pubkey())
    out.write_text(json.dumps(keystore))
    with pytest.raises(ConfigError, match="not the .* it names"):
        keypair_from_ref(ref, "chains.sol.signer")
    monkeypatch.delenv("PAYER_PW")
    with pytest.raises(ConfigError, match="PAYER_PW is not set"):
        keypair_from_ref(ref, "chains.sol.signer")


def test_import_refuses_bad_input(tmp_path, capsys):
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "bad.key").write_text("0x1234")
    args = ["keys", "import", "--kind", "evm", "--key-file", str(tmp_path / "bad.key"), "--out", str(tmp_path / "o.json"),
            "--password-file", str(tmp_path / "pw")]
    assert main(args) == 1
    assert "must hold a 32-byte hex private key" in capsys.readouterr().err
    (tmp_path / "o.json").write_text("{}")
    (tmp_path / "bad.key").write_text(EVM_KEY)
    assert main(args) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert main([*args[:-1], str(tmp_path / "empty"), "--force"]) == 1
    assert "password is empty" in capsys.readouterr().err


def test_keystore_that_is_not_json_is_named(tmp_path):
    (tmp_path / "k.json").write_text("not json")
    (tmp_path / "pw").write_text("pw")
    ref = KeyRef(keystore=tmp_path / "k.json", password_file=tmp_path / "pw")
    with pytest.raises(ConfigError, match="is not JSON"):
        evm_key(ref, "worker.evm_key")
    with pytest.raises(ConfigError, match="is encrypted"):
        ref.read_text()
