"""`relay config check` offline: every link between sections, each problem naming its field; exit 1
with all of them listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from solders.keypair import Keypair

from relay.cli import main
from relay.cli.config import load_committee, offline_problems
from relay.config import load_config

GATEWAY = "0x" + "22" * 20
PROGRAM = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"


@pytest.fixture
def folder(tmp_path: Path, dealt) -> Path:
    dealt.committee.save(tmp_path / "committee.toml")
    (tmp_path / "evm.key").write_text("0x" + "11" * 32)
    (tmp_path / "sol.json").write_text(json.dumps(list(bytes(Keypair()))))
    return tmp_path


def good() -> dict:
    return {
        "chains": {
            "evm": {"kind": "evm", "domain": 31337, "chain_id": 31337, "rpc_urls": ["http://127.0.0.1:1"],
                    "contracts": {"Gateway": GATEWAY}, "signer": {"file": "evm.key", "allow_raw": True}},
            "sol": {"kind": "solana", "domain": 5, "rpc_urls": ["http://127.0.0.1:2"], "program_id": PROGRAM,
                    "signer": {"file": "sol.json", "allow_raw": True}},
        },
        "committee": {"file": "committee.toml"},
        "feeds": {"ETH/USD": {"decimals": 8, "sources": [{"kind": "file", "name": "r", "path": "r.jsonl"}]}},
        "feed_server": {"stale_after": {"ETH/USD": 10}},
        "feed_push": {"targets": ["evm", "sol"], "feeds": ["ETH/USD"]},
        "worker": {"executors": ["echo"], "payout": {"evm": "0x" + "aa" * 20, "sol": PROGRAM}},
    }


def check(folder: Path, data: dict) -> tuple[int, list[str]]:
    path = folder / "config.toml"
    path.write_text(tomli_w.dumps(data))
    config = load_config(path, check_keys=False)
    return main(["config", "check", "--config", str(path)]), load_committee(config)[1] + offline_problems(config)


def test_a_good_config_passes(folder: Path, capsys) -> None:
    code, problems = check(folder, good())
    assert (code, problems) == (0, [])
    assert "OK, 2 chains" in capsys.readouterr().out


def test_every_broken_link_is_listed_with_its_field(folder: Path, capsys) -> None:
    data = good()
    del data["chains"]["evm"]["contracts"]["Gateway"]
    del data["chains"]["sol"]["program_id"]
    data["feed_push"] = {"targets": ["evm", "base"], "feeds": ["BTC/USD"]}
    data["feed_server"]["stale_after"] = {"SOL/USD": 5}
    data["worker"] = {"executors": ["echo", "nope"], "payout": {"arbitrum": "0x" + "aa" * 20, "sol": "0x" + "aa" * 20}}
    data["executors"] = {"ghost": {"model": "x"}}
    data["chains"]["evm"]["signer"] = {"file": "missing.key"}  # missing, and raw without the opt-in
    data["chains"]["evm"]["sender"] = {"keystore": "ks.json", "password_env": "TESSERA_TEST_UNSET_PASSWORD"}
    code, problems = check(folder, data)
    expected = [
        "chains.evm.contracts.Gateway: missing",
        "chains.sol.program_id: missing",
        "feed_push.targets: 'base' is not a chain under [chains] (known: evm, sol)",
        "feed_push.feeds: 'BTC/USD' is not a feed under [feeds] (known: ETH/USD)",
        "feed_server.stale_after: 'SOL/USD' is not a feed under [feeds]",
        "worker.payout.arbitrum: no chain 'arbitrum' under [chains]",
        "worker.payout.sol: '0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is not a base58 Solana public key (chain 'sol' is solana)",
        "worker.executors: no executor 'nope' is installed (known: ",
        "executors.ghost: options for an executor that is not installed",
        f"chains.evm.signer: key file {folder / 'missing.key'} does not exist",
        f"chains.evm.sender: keystore {folder / 'ks.json'} does not exist",
        "chains.evm.sender: environment variable TESSERA_TEST_UNSET_PASSWORD (the keystore's password) is not set",
        "chains.evm.signer: file",  # ... holds an unencrypted key; encrypt it with `relay keys import ...`
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected)
    assert code == 1
    out = capsys.readouterr().out
    assert f"{len(expected)} problems" in out and all(f"  - {p}" in out for p in problems)


def test_committee_file_missing_or_invalid(folder: Path) -> None:
    data = good()
    data["committee"] = {"file": "nowhere.toml"}
    assert check(folder, data)[1] == [f"committee.file: {folder / 'nowhere.toml'} does not exist (`relay keys dkg` writes it)"]
    (folder / "bad.toml").write_text("epoch = 1\n")
    data["committee"] = {"file": "bad.toml"}
    code, problems = check(folder, data)
    assert code == 1 and len(problems) == 1 and problems[0].startswith(f"committee.file: {folder / 'bad.toml'} is not a valid committee")
    del data["committee"]
    assert check(folder, data)[1][0].startswith("committee: no [committee] table")


def test_what_loading_refuses_is_printed_as_the_answer(folder: Path, capsys) -> None:
    data = good()
    data["chains"]["evm"]["domain"] = 5  # an EVM domain other than its chain id
    path = folder / "config.toml"
    path.write_text(tomli_w.dumps(data))
    assert main(["config", "check", "--config", str(path)]) == 1
    assert "chains.evm.domain 5 differs from chain_id 31337" in capsys.readouterr().out


def test_code_comparison_masks_only_the_immutables(evm_contracts) -> None:
    from adapters.evm.checks import _deployed_artifact, code_problem

    artifact = _deployed_artifact("Gateway")
    assert artifact is not None
    code, spans = artifact
    assert spans, "the Gateway has immutables (localDomain, verifier)"
    deployed = bytearray(code)
    for start, length in spans:  # other constructor arguments: other immutables
        deployed[start:start + length] = bytes([7]) * length
    assert code_problem("Gateway", GATEWAY, bytes(deployed)) is None
    outside = next(i for i in range(len(code)) if not any(s <= i < s + n for s, n in spans))
    deployed[outside] ^= 1
    assert "is not Gateway as contracts/evm builds it" in code_problem("Gateway", GATEWAY, bytes(deployed))
    assert "no contract at this address" in code_problem("Gateway", GATEWAY, b"")
    assert "is not Gateway" in code_problem("Gateway", GATEWAY, _deployed_artifact("Probe")[0])
    assert code_problem("SomethingElse", GATEWAY, b"\x60") is None  # no artifact: code exists is all it says
