"""The v1 envelope: the one canonical encoding of a Tessera message (docs/PROTOCOL.md)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from eth_hash.auto import keccak

from relay.protocol import (
    ENVELOPE_HEADER_LEN,
    MAX_PAYLOAD_LEN,
    PROTOCOL_VERSION,
    TAG_MESSAGE,
    U32_MAX,
    U64_MAX,
    MessageKind,
)

_HEADER = struct.Struct(">BBQI32sI32s")
assert _HEADER.size == ENVELOPE_HEADER_LEN


class EnvelopeError(ValueError):
    """An envelope (or its bytes) does not follow wire protocol v1."""


def keccak256(data: bytes) -> bytes:
    return keccak(data)


def address_to_bytes32(value: bytes | str) -> bytes:
    """Left-pad a 20-byte EVM address (bytes or 0x-hex) to the 32-byte form of the envelope."""
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value) if isinstance(value, str) else value
    if len(raw) == 32:
        return raw
    if len(raw) != 20:
        raise EnvelopeError(f"an EVM address has 20 bytes, got {len(raw)}")
    return b"\x00" * 12 + raw


def message_digest(epoch: int, message_id: bytes) -> bytes:
    """What the committee signs for a message: keccak256("TESSERA/v1/MSG" ‖ epoch:u32 ‖ id)."""
    if not 0 <= epoch <= U32_MAX:
        raise EnvelopeError(f"epoch {epoch} does not fit in uint32")
    if len(message_id) != 32:
        raise EnvelopeError("message_id must be 32 bytes")
    return keccak256(TAG_MESSAGE + epoch.to_bytes(4, "big") + message_id)


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: int
    nonce: int
    src_domain: int
    src_sender: bytes
    dst_domain: int
    dst_receiver: bytes
    payload: bytes = b""
    version: int = PROTOCOL_VERSION
    # The message id, hashed on first use (an envelope is immutable): not part of the value.
    _id: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version != PROTOCOL_VERSION:
            raise EnvelopeError(f"unsupported envelope version {self.version}; this node speaks v{PROTOCOL_VERSION}")
        try:
            MessageKind(self.kind)
        except ValueError:
            raise EnvelopeError(
                f"unknown message kind {self.kind}; expected one of "
                + ", ".join(f"{k.value} {k.name}" for k in MessageKind)
            ) from None
        if not 0 <= self.nonce <= U64_MAX:
            raise EnvelopeError(f"nonce {self.nonce} does not fit in uint64")
        for name in ("src_domain", "dst_domain"):
            value = getattr(self, name)
            if not 0 <= value <= U32_MAX:
                raise EnvelopeError(f"{name} {value} does not fit in uint32")
        for name in ("src_sender", "dst_receiver"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise EnvelopeError(f"{name} must be 32 bytes (left-pad EVM addresses with zeros)")
        if not isinstance(self.payload, bytes):
            raise EnvelopeError("payload must be bytes")
        if len(self.payload) > MAX_PAYLOAD_LEN:
            raise EnvelopeError(f"payload is {len(self.payload)} bytes; the limit is {MAX_PAYLOAD_LEN}")

    def encode(self) -> bytes:
        return (
            _HEADER.pack(
                self.version,
                self.kind,
                self.nonce,
                self.src_domain,
                self.src_sender,
                self.dst_domain,
                self.dst_receiver,
            )
            + self.payload
        )

    @classmethod
    def decode(cls, data: bytes) -> "Envelope":
        if len(data) < ENVELOPE_HEADER_LEN:
            raise EnvelopeError(
                f"envelope is {len(data)} bytes; a v1 envelope has at least {ENVELOPE_HEADER_LEN} (the header)"
            )
        version, kind, nonce, src_domain, src_sender, dst_domain, dst_receiver = _HEADER.unpack_from(data)
        return cls(
            version=version,
            kind=kind,
            nonce=nonce,
            src_domain=src_domain,
            src_sender=src_sender,
            dst_domain=dst_domain,
            dst_receiver=dst_receiver,
            payload=bytes(data[ENVELOPE_HEADER_LEN:]),
        )

    @property
    def message_id(self) -> bytes:
        if self._id is None:
            object.__setattr__(self, "_id", keccak256(self.encode()))
        assert self._id is not None
        return self._id

    def digest(self, epoch: int) -> bytes:
        return message_digest(epoch, self.message_id)
