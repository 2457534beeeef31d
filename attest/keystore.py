"""Key shares encrypted at rest: scrypt (password) or HKDF-SHA256 (key file), then AES-256-GCM.

File format and AAD layout: docs/KEYS.md. The plaintext is the 32-byte big-endian share scalar; the
AAD binds version, epoch, index and public share, so a share cannot be moved to another header.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from attest.bn254 import G2_LEN, R
from attest.committee import Committee, CommitteeError, KeyShare
from attest.errors import TesseraError
from attest.files import write_atomic

VERSION = 1
PASSWORD_ENV = "TESSERA_KEY_PASSWORD"
AAD_TAG = b"TESSERA/v1/KEYSTORE"
HKDF_INFO = b"TESSERA/v1/KEYSTORE/keyfile"
SCRYPT_DEFAULTS = {"n": 32768, "r": 8, "p": 1}
# Bounds on what a file may ask of us: a tampered file must not make us allocate gigabytes
# (scrypt needs 128·r·n bytes; the defaults need 32 MiB).
_SCRYPT_MAX_MEMORY = 256 * 2**20
_SCRYPT_MAX_P = 16


class KeystoreError(TesseraError):
    """An encrypted share could not be written, read or decrypted."""


class WrongSecretError(KeystoreError):
    """The password or key file does not open this share."""


class CorruptShareError(KeystoreError):
    """The share file is malformed."""


class ShareMismatchError(KeystoreError):
    """The share decrypts, but belongs to another committee or member."""


@dataclass(frozen=True, slots=True)
class StoredShare:
    share: KeyShare
    public_share: bytes  # as recorded in the file (bound by the AAD)
    group_key: bytes


@dataclass(frozen=True, slots=True)
class Secret:
    """What unlocks a share: a password (scrypt) or a 32-byte key file (HKDF)."""

    kind: str  # "scrypt" or "keyfile"
    material: bytes

    def __repr__(self) -> str:
        return f"Secret(kind={self.kind!r})"

    @classmethod
    def password(cls, password: str | bytes) -> "Secret":
        raw = password.encode() if isinstance(password, str) else password
        if not raw:
            raise KeystoreError("the password is empty; put a non-empty password in the password file "
                                f"or in ${PASSWORD_ENV}")
        return cls("scrypt", raw)

    @classmethod
    def key(cls, key: bytes) -> "Secret":
        if len(key) != 32:
            raise KeystoreError(f"a key file must hold exactly 32 bytes (raw or 64 hex characters), got {len(key)}")
        return cls("keyfile", key)


def read_password_file(path: Path) -> Secret:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read password file {path}: {exc.strerror}") from None
    # Editors add a trailing newline; a password never ends in one.
    return Secret.password(text.rstrip(b"\r\n"))


def read_key_file(path: Path) -> Secret:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(raw) == 32:
        return Secret.key(raw)
    text = raw.strip().decode("ascii", errors="replace")
    text = text[2:] if text.startswith("0x") else text
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeystoreError(f"key file {path} must hold 32 raw bytes or 64 hex characters "
                            "(make one with `head -c 32 /dev/urandom > key.bin`)") from None
    return Secret.key(key)


def generate_key_file(path: Path) -> Secret:
    key = secrets.token_bytes(32)
    write_atomic(path, key, mode=0o600)
    return Secret.key(key)


def resolve_secret(password_file: Path | None, key_file: Path | None, *, required: bool = True) -> Secret | None:
    """--password-file, --key-file, or $TESSERA_KEY_PASSWORD, in that order."""
    if password_file is not None and key_file is not None:
        raise KeystoreError("give either --password-file or --key-file, not both")
    if password_file is not None:
        return read_password_file(password_file)
    if key_file is not None:
        return read_key_file(key_file)
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return Secret.password(env)
    if required:
        raise KeystoreError(f"key shares are stored encrypted: give --password-file FILE, --key-file FILE, "
                            f"or set ${PASSWORD_ENV}")
    return None


def aad(version: int, epoch: int, index: int, public_share: bytes) -> bytes:
    return AAD_TAG + version.to_bytes(1, "big") + epoch.to_bytes(4, "big") + index.to_bytes(4, "big") + public_share


def _derive_key(secret: Secret, kdf: str, params: dict[str, Any], source: str) -> bytes:
    if kdf != secret.kind:
        wanted = "--password-file or $" + PASSWORD_ENV if kdf == "scrypt" else "--key-file"
        raise WrongSecretError(f"cannot decrypt {source}: it was encrypted with kdf {kdf!r}; unlock it with {wanted}")
    salt = _hex_field(params, "salt", source, "crypto.kdf_params.salt")
    if kdf == "scrypt":
        n, r, p = (_int_field(params, k, source, f"crypto.kdf_params.{k}") for k in ("n", "r", "p"))
        if n < 2 or n & (n - 1) or r < 1 or not 1 <= p <= _SCRYPT_MAX_P or 128 * r * n > _SCRYPT_MAX_MEMORY:
            raise CorruptShareError(f"{source}: field crypto.kdf_params has out-of-range scrypt parameters "
                                    f"(n={n}, r={r}, p={p})")
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret.material)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(secret.material)


def encrypt_share(share: KeyShare, secret: Secret, *, group_key: bytes, public_share: bytes | None = None,
                  scrypt_n: int = SCRYPT_DEFAULTS["n"]) -> dict[str, Any]:
    if public_share is None:
        public_share = share.public_share()
    if len(public_share) != G2_LEN or len(group_key) != G2_LEN:
        raise KeystoreError(f"public_share and group_key must be {G2_LEN}-byte G2 encodings")
    salt = secrets.token_bytes(32)
    if secret.kind == "scrypt":
        params: dict[str, Any] = {**SCRYPT_DEFAULTS, "n": scrypt_n, "salt": "0x" + salt.hex()}
    else:
        params = {"salt": "0x" + salt.hex()}
    key = _derive_key(secret, secret.kind, params, "new share")
    nonce = secrets.token_bytes(12)
    ciphertext = AESGCM(key).encrypt(nonce, share.to_bytes(), aad(VERSION, share.epoch, share.index, public_share))
    return {
        "version": VERSION,
        "epoch": share.epoch,
        "index": share.index,
        "public_share": "0x" + public_share.hex(),
        "group_key": "0x" + group_key.hex(),
        "crypto": {
            "kdf": secret.kind,
            "kdf_params": params,
            "cipher": "aes-256-gcm",
            "nonce": "0x" + nonce.hex(),
            "ciphertext": "0x" + ciphertext.hex(),
        },
    }


def decrypt_share(document: dict[str, Any], secret: Secret, source: str = "share file") -> StoredShare:
    if not isinstance(document, dict):
        raise CorruptShareError(f"{source}: expected a JSON object")
    version = _int_field(document, "version", source)
    if version != VERSION:
        raise CorruptShareError(f"{source}: field version is {version}; this Tessera reads version {VERSION}")
    epoch = _int_field(document, "epoch", source)
    index = _int_field(document, "index", source)
    if not 0 <= epoch < 2**32:
        raise CorruptShareError(f"{source}: field epoch does not fit in uint32")
    if not 1 <= index < 2**32:
        raise CorruptShareError(f"{source}: field index must be a positive uint32")
    public_share = _hex_field(document, "public_share", source, length=G2_LEN)
    group_key = _hex_field(document, "group_key", source, length=G2_LEN)
    crypto = document.get("crypto")
    if not isinstance(crypto, dict):
        raise CorruptShareError(f"{source}: field crypto is missing or not an object")
    kdf = crypto.get("kdf")
    if kdf not in ("scrypt", "keyfile"):
        raise CorruptShareError(f"{source}: field crypto.kdf must be 'scrypt' or 'keyfile', got {kdf!r}")
    if crypto.get("cipher") != "aes-256-gcm":
        raise CorruptShareError(f"{source}: field crypto.cipher must be 'aes-256-gcm', got {crypto.get('cipher')!r}")
    params = crypto.get("kdf_params")
    if not isinstance(params, dict):
        raise CorruptShareError(f"{source}: field crypto.kdf_params is missing or not an object")
    nonce = _hex_field(crypto, "nonce", source, "crypto.nonce", length=12)
    ciphertext = _hex_field(crypto, "ciphertext", source, "crypto.ciphertext", length=32 + 16)
    key = _derive_key(secret, kdf, params, source)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, aad(version, epoch, index, public_share))
    except InvalidTag:
        # GCM cannot tell a wrong key from edited bytes; say both, the likelier first.
        raise WrongSecretError(f"cannot decrypt {source}: wrong password or key file (or the file's ciphertext, "
                               "nonce, epoch, index or public_share was altered)") from None
    scalar = int.from_bytes(plaintext, "big")
    if not 0 < scalar < R:
        raise CorruptShareError(f"{source}: the decrypted share is not a valid scalar")
    return StoredShare(KeyShare(index=index, scalar=scalar, epoch=epoch), public_share, group_key)


def save_share(path: Path, share: KeyShare, secret: Secret, *, group_key: bytes, public_share: bytes | None = None,
               **kwargs: Any) -> None:
    document = encrypt_share(share, secret, group_key=group_key, public_share=public_share, **kwargs)
    write_atomic(path, (json.dumps(document, indent=2) + "\n").encode(), mode=0o600)


def load_share_for(committee: Committee, path: Path, secret: Secret) -> KeyShare:
    """What an attester calls at start-up: decrypt, then prove the share is this committee's."""
    stored = load_share(path, secret)
    share = stored.share
    problems = []
    if share.epoch != committee.epoch:
        problems.append(f"its epoch is {share.epoch}, the committee's is {committee.epoch}")
    if stored.group_key != committee.group_key:
        problems.append("its group key is not the committee's")
    try:
        expected = committee.public_share(share.index)
    except CommitteeError:
        raise ShareMismatchError(f"{path.name}: member {share.index} is not in the committee of epoch "
                                 f"{committee.epoch}; use the share file written with this committee file") from None
    if stored.public_share != expected:
        problems.append(f"its public share is not member {share.index}'s in the committee")
    elif share.public_share() != expected:
        problems.append(f"the decrypted scalar does not match member {share.index}'s public share")
    if problems:
        raise ShareMismatchError(f"{path.name} does not belong to this committee: {'; '.join(problems)}. "
                                 "Use the share file written together with this committee file")
    return share


def load_share(path: Path, secret: Secret) -> StoredShare:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read share file {path}: {exc.strerror}") from None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptShareError(f"{path.name}: not valid JSON ({exc})") from None
    return decrypt_share(document, secret, path.name)


def _int_field(obj: dict[str, Any], name: str, source: str, label: str | None = None) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CorruptShareError(f"{source}: field {label or name} is missing or not an integer")
    return value


def _hex_field(obj: dict[str, Any], name: str, source: str, label: str | None = None,
               length: int | None = None) -> bytes:
    label = label or name
    value = obj.get(name)
    if not isinstance(value, str) or not value.startswith("0x"):
        raise CorruptShareError(f"{source}: field {label} is missing or not 0x-hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise CorruptShareError(f"{source}: field {label} is not valid hex") from None
    if length is not None and len(raw) != length:
        raise CorruptShareError(f"{source}: field {label} must be {length} bytes, got {len(raw)}")
    return raw
