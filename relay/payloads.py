"""Kind-specific payload layouts (docs/PROTOCOL.md). All integers big-endian, fields packed."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from relay.envelope import EnvelopeError
from relay.protocol import ROTATION_PAYLOAD_LEN

_ROTATION = struct.Struct(">IHH128sI")
assert _ROTATION.size == ROTATION_PAYLOAD_LEN


@dataclass(frozen=True, slots=True)
class CommitteeRotation:
    """COMMITTEE_ROTATION payload: the outgoing committee (epoch E) signs the key of epoch E+1.

    Destinations keep accepting signatures of the outgoing epoch for `grace_seconds` after they
    apply the rotation, so messages signed just before the switch still land.
    """

    new_epoch: int
    n: int
    t: int
    group_key: bytes  # G2, 128 bytes, EIP-197 order
    grace_seconds: int

    def __post_init__(self) -> None:
        if len(self.group_key) != 128:
            raise EnvelopeError("rotation group_key must be a 128-byte G2 encoding")
        if not 1 <= self.t <= self.n:
            raise EnvelopeError(f"rotation threshold t={self.t} must satisfy 1 <= t <= n={self.n}")

    def encode(self) -> bytes:
        return _ROTATION.pack(self.new_epoch, self.n, self.t, self.group_key, self.grace_seconds)

    @classmethod
    def decode(cls, data: bytes) -> "CommitteeRotation":
        if len(data) != ROTATION_PAYLOAD_LEN:
            raise EnvelopeError(f"rotation payload is {len(data)} bytes; it must be {ROTATION_PAYLOAD_LEN}")
        return cls(*_ROTATION.unpack(data))
