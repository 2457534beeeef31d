import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest.keystore import (
    PASSWORD_ENV,
    CorruptShareError,
    KeystoreError,
    Secret,
    ShareMismatchError,
    WrongSecretError,
    generate_key_file,
    load_share,
    load_share_for,
    read_key_file,
    read_password_file,
    resolve_secret,
    save_share,
)
from attest.threshold import deal


@pytest.fixture(scope="module")
def dealt():
    return deal(4, 3, epoch=7)


def _save(path: Path, dealt, index: int, secret: Secret) -> None:
    committee, shares = dealt
    share = shares[index - 1]
    save_share(path, share, secret, group_key=committee.group_key, public_share=committee.public_share(index))


def test_password_round_trip_writes_the_shared_format(tmp_path: Path, dealt) -> None:
    committee, shares = dealt
    path = tmp_path / "share-2.json"
    _save(path, dealt, 2, Secret.password("correct horse"))

    document = json.loads(path.read_text())
    assert document["version"] == 1 and document["epoch"] == 7 and document["index"] == 2
    assert document["public_share"] == "0x" + committee.public_share(2).hex()
    assert document["group_key"] == "0x" + committee.group_key.hex()
    crypto = document["crypto"]
    assert crypto["kdf"] == "scrypt" and crypto["cipher"] == "aes-256-gcm"
    assert {k: crypto["kdf_params"][k] for k in ("n", "r", "p")} == {"n": 32768, "r": 8, "p": 1}
    assert len(bytes.fromhex(crypto["kdf_params"]["salt"][2:])) == 32
    assert len(bytes.fromhex(crypto["nonce"][2:])) == 12
    # The secret scalar never appears in the file.
    assert shares[1].to_bytes().hex() not in path.read_text()

    stored = load_share(path, Secret.password("correct horse"))
    assert stored.share.scalar == shares[1].scalar
    assert (stored.share.index, stored.share.epoch) == (2, 7)
    assert stored.public_share == committee.public_share(2)
    assert load_share_for(committee, path, Secret.password("correct horse")).scalar == shares[1].scalar


def test_key_file_round_trip(tmp_path: Path, dealt) -> None:
    committee, shares = dealt
    key = generate_key_file(tmp_path / "key.bin")
    assert stat.S_IMODE(os.stat(tmp_path / "key.bin").st_mode) == 0o600
    path = tmp_path / "share-3.json"
    _save(path, dealt, 3, key)
    assert json.loads(path.read_text())["crypto"]["kdf"] == "keyfile"
    assert load_share(path, read_key_file(tmp_path / "key.bin")).share.scalar == shares[2].scalar
    # The same key written as hex text opens it too.
    (tmp_path / "key.hex").write_text("0x" + key.material.hex() + "\n")
    assert load_share(path, read_key_file(tmp_path / "key.hex")).share.scalar == shares[2].scalar


def test_wrong_password_is_rejected_with_a_clear_message(tmp_path: Path, dealt) -> None:
    path = tmp_path / "share-2.json"
    _save(path, dealt, 2, Secret.password("right"))
    with pytest.raises(WrongSecretError, match="cannot decrypt share-2.json: wrong password or key file"):
        load_share(path, Secret.password("wrong"))
    with pytest.raises(WrongSecretError, match="encrypted with kdf 'scrypt'.*--password-file"):
        load_share(path, Secret.key(b"\x01" * 32))


def test_wrong_key_file_is_rejected(tmp_path: Path, dealt) -> None:
    path = tmp_path / "share-1.json"
    _save(path, dealt, 1, Secret.key(b"\x01" * 32))
    with pytest.raises(WrongSecretError, match="cannot decrypt share-1.json: wrong password or key file"):
        load_share(path, Secret.key(b"\x02" * 32))


@pytest.mark.parametrize("field, mutate", [
    ("crypto.ciphertext", lambda d: d["crypto"].__setitem__("ciphertext", _flip(d["crypto"]["ciphertext"]))),
    ("crypto.nonce", lambda d: d["crypto"].__setitem__("nonce", _flip(d["crypto"]["nonce"]))),
    ("index", lambda d: d.__setitem__("index", 3)),  # bound by the AAD: a share cannot change owner
    ("epoch", lambda d: d.__setitem__("epoch", 8)),
])
def test_tampering_is_rejected(tmp_path: Path, dealt, field: str, mutate) -> None:
    path = tmp_path / "share-2.json"
    secret = Secret.key(b"\x07" * 32)
    _save(path, dealt, 2, secret)
    document = json.loads(path.read_text())
    mutate(document)
    path.write_text(json.dumps(document))
    with pytest.raises(WrongSecretError, match="cannot decrypt share-2.json"):
        load_share(path, secret)


def test_public_share_swap_is_rejected(tmp_path: Path, dealt) -> None:
    committee, _ = dealt
    path = tmp_path / "share-2.json"
    secret = Secret.key(b"\x07" * 32)
    _save(path, dealt, 2, secret)
    document = json.loads(path.read_text())
    document["public_share"] = "0x" + committee.public_share(3).hex()
    path.write_text(json.dumps(document))
    with pytest.raises(WrongSecretError):
        load_share(path, secret)


@pytest.mark.parametrize("field, mutate", [
    ("crypto.nonce", lambda d: d["crypto"].__setitem__("nonce", "0xzz")),
    ("crypto.ciphertext", lambda d: d["crypto"].__setitem__("ciphertext", "0x00")),
    ("crypto.kdf", lambda d: d["crypto"].__setitem__("kdf", "pbkdf2")),
    ("crypto.kdf_params", lambda d: d["crypto"]["kdf_params"].__setitem__("n", 2**40)),
    ("public_share", lambda d: d.pop("public_share")),
    ("version", lambda d: d.__setitem__("version", 2)),
    ("crypto", lambda d: d.pop("crypto")),
])
def test_corrupt_file_names_the_field(tmp_path: Path, dealt, field: str, mutate) -> None:
    path = tmp_path / "share-2.json"
    secret = Secret.password("pw")
    _save(path, dealt, 2, secret)
    document = json.loads(path.read_text())
    mutate(document)
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptShareError, match=f"share-2.json: field {field}"):
        load_share(path, secret)


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "share-1.json"
    path.write_text('{"version": 1, "epoch"')
    with pytest.raises(CorruptShareError, match="share-1.json: not valid JSON"):
        load_share(path, Secret.password("pw"))


def test_write_is_atomic_and_private(tmp_path: Path, dealt) -> None:
    path = tmp_path / "keys" / "share-1.json"
    secret = Secret.key(b"\x09" * 32)
    _save(path, dealt, 1, secret)
    first = path.read_bytes()
    _save(path, dealt, 1, secret)  # overwrite: a fresh nonce and salt, same share
    assert path.read_bytes() != first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["share-1.json"]  # no temp file left


def test_share_from_another_committee_is_rejected(tmp_path: Path, dealt) -> None:
    other_committee, _ = deal(4, 3, epoch=7)
    path = tmp_path / "share-2.json"
    secret = Secret.password("pw")
    _save(path, dealt, 2, secret)
    with pytest.raises(ShareMismatchError, match="does not belong to this committee"):
        load_share_for(other_committee, path, secret)


def test_secret_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(KeystoreError, match="--password-file FILE, --key-file FILE"):
        resolve_secret(None, None)
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert resolve_secret(None, None) == Secret.password("from-env")
    (tmp_path / "pw").write_text("from-file\n")
    assert resolve_secret(tmp_path / "pw", None) == Secret.password("from-file")
    assert read_password_file(tmp_path / "pw").material == b"from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(KeystoreError, match="password is empty"):
        read_password_file(tmp_path / "empty")
    (tmp_path / "short.key").write_bytes(b"\x01" * 16)
    with pytest.raises(KeystoreError, match="32 raw bytes or 64 hex"):
        read_key_file(tmp_path / "short.key")


def _flip(value: str) -> str:
    raw = bytearray(bytes.fromhex(value[2:]))
    raw[0] ^= 1
    return "0x" + raw.hex()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_single_character_edit_yields_another_share(tmp_path: Path, dealt, data) -> None:
    """Whatever one character of the file is changed to, loading fails cleanly or gives the same share."""
    committee, shares = dealt
    secret = Secret.key(b"\x0b" * 32)
    path = tmp_path / "share-1.json"
    _save(path, dealt, 1, secret)
    text = path.read_text()
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from('0123456789abcdefx"{}[],: \n'))
    path.write_text(text[:position] + replacement + text[position + 1:])
    try:
        stored = load_share(path, secret)
    except KeystoreError:
        return
    assert stored.share.scalar == shares[0].scalar and stored.share.index == 1 and stored.share.epoch == 7
