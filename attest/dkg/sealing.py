"""Share encryption (ECIES: ephemeral X25519 + HKDF-SHA256 + AES-256-GCM). Private shares travel
inside public messages, sealed to the recipient's round-0 X25519 key and bound to the session, the
dealer and the recipient (replayed elsewhere, a box does not open)."""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest.bn254 import R
from attest.dkg.wire import SHARE_INFO, unhex


def x25519_public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _share_aad(session: bytes, sender: int, recipient: int) -> bytes:
    return session + sender.to_bytes(4, "big") + recipient.to_bytes(4, "big")


def seal_share(session: bytes, sender: int, recipient: int, recipient_key: bytes, share: int) -> dict[str, str]:
    ephemeral = X25519PrivateKey.generate()
    ephemeral_pub = x25519_public_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_key))
    key = HKDF(hashes.SHA256(), 32, salt=None, info=SHARE_INFO + ephemeral_pub + recipient_key).derive(shared)
    nonce = secrets.token_bytes(12)
    ciphertext = AESGCM(key).encrypt(nonce, (share % R).to_bytes(32, "big"), _share_aad(session, sender, recipient))
    return {"ephemeral": "0x" + ephemeral_pub.hex(), "nonce": "0x" + nonce.hex(), "ciphertext": "0x" + ciphertext.hex()}


def open_share(session: bytes, sender: int, recipient: int, recipient_key: X25519PrivateKey,
               sealed: dict[str, str]) -> int:
    """Raises ValueError when the box does not open to a scalar: that is grounds for a complaint."""
    ephemeral_pub = unhex(sealed["ephemeral"], 32)
    nonce = unhex(sealed["nonce"], 12)
    ciphertext = unhex(sealed["ciphertext"], 48)
    shared = recipient_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_pub))
    own_pub = x25519_public_bytes(recipient_key)
    key = HKDF(hashes.SHA256(), 32, salt=None, info=SHARE_INFO + ephemeral_pub + own_pub).derive(shared)
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _share_aad(session, sender, recipient))
    except InvalidTag:
        raise ValueError("the encrypted share does not decrypt") from None
    scalar = int.from_bytes(plaintext, "big")
    if scalar >= R:
        raise ValueError("the decrypted share is not reduced modulo r")
    return scalar
