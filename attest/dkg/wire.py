"""What DKG participants exchange: protocol constants, the message envelope, canonical JSON, and the
placeholders a transport records for a message it could not use."""

from __future__ import annotations

import json
from typing import Any

from attest.bn254 import R

PROTOCOL = "TESSERA/v1/DKG"
ROUND_HELLO, ROUND_DEAL, ROUND_COMPLAINTS, ROUND_JUSTIFY, ROUND_CONFIRM = range(5)
ROUND_NAMES = {0: "hello", 1: "deal", 2: "complaints", 3: "justify", 4: "confirm"}
SHARE_INFO = PROTOCOL.encode() + b"/share"  # HKDF info prefix of the share boxes
SIGNING_TAG = PROTOCOL.encode() + b"/message"  # prefix of what an identity key signs
MAX_MESSAGE_BYTES = 1 << 20  # a deal message for n participants is ~n·200 bytes

# Stand-ins in the transcript: a message that could not be parsed, and one that the sender's pinned
# identity key did not sign. (A missed deadline is None.)
MALFORMED: dict[str, Any] = {"malformed": True}
FORGED: dict[str, Any] = {"forged": True}


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def unhex(value: Any, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected 0x-hex")
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise ValueError(f"expected {length} bytes, got {len(raw)}")
    return raw


def scalar_hex(value: int) -> str:
    return "0x" + (value % R).to_bytes(32, "big").hex()


def envelope(session: bytes, rnd: int, sender: int, body: dict[str, Any]) -> dict[str, Any]:
    """A round's message as published (unsigned; `identity.sign_message` adds the signature)."""
    return {"protocol": PROTOCOL, "session": session.hex(), "round": rnd, "index": sender, "body": body}
