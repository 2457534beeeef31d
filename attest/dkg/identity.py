"""Ed25519 identity keys: when a DKG config pins them, every message is signed by its sender's key,
so a message is attributed to a key rather than to the endpoint that served it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from attest.dealer import KeygenError
from attest.dkg.wire import SIGNING_TAG, canonical, unhex


def generate_identity() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def identity_public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def identity_private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def load_identity(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 identity key file: the 32-byte seed, raw or as 0x-hex text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeygenError(f"cannot read identity key {path}: {exc.strerror}") from None
    if len(raw) != 32:
        text = raw.strip().decode("ascii", errors="replace")
        try:
            raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
        except ValueError:
            raw = b""
    if len(raw) != 32:
        raise KeygenError(f"identity key {path} must hold a 32-byte Ed25519 seed, raw or hex "
                          "(make one with `relay keys identity --out FILE`)")
    return Ed25519PrivateKey.from_private_bytes(raw)


def signing_payload(message: dict[str, Any]) -> bytes:
    """What the identity key signs: the tagged canonical message without its signature."""
    return SIGNING_TAG + canonical({k: v for k, v in message.items() if k != "signature"})


def signature_valid(public_key: bytes, message: dict[str, Any]) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(unhex(message.get("signature"), 64),
                                                              signing_payload(message))
    except (InvalidSignature, ValueError):
        return False
    return True
