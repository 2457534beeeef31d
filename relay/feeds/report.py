"""Feed reports and attester observations: their packed big-endian encodings and what gets signed.

Layouts and digests are normative (docs/FEEDS.md); tests/vectors/feeds_v1.json pins them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from relay.envelope import keccak256
from relay.errors import TesseraError
from relay.protocol import TAG_FEED, U32_MAX, U64_MAX

FEED_ID_LEN = 32
MAX_DECIMALS = 18
INT256_MIN = -(2**255)
INT256_MAX = 2**255 - 1
UINT256_MAX = 2**256 - 1
U16_MAX = 2**16 - 1
MAX_OBSERVATIONS = 255

# Sub-tag that separates an observation's digest from a report's under the same feed tag.
OBSERVATION_TAG = TAG_FEED + b"OBS"

# feed_id 32, round u64, price int256, confidence uint256, decimals u8, observations u8,
# observed_at u64 (ms), published_at u64 (ms)
_REPORT = struct.Struct(">32sQ32s32sBBQQ")
REPORT_LEN = _REPORT.size  # 122
# feed_id 32, round u64, member u16, decimals u8, price int256, timestamp u64 (ms)
_OBSERVATION = struct.Struct(">32sQHB32sQ")
OBSERVATION_LEN = _OBSERVATION.size  # 83


class FeedError(TesseraError):
    """Base class of the feed errors."""


class ReportError(FeedError, ValueError):
    """A feed report or observation (or its bytes) does not follow the v1 feed encoding."""


def encode_feed_id(feed_id: str) -> bytes:
    raw = feed_id.encode("ascii") if isinstance(feed_id, str) and feed_id.isascii() else b""
    if not 1 <= len(raw) <= FEED_ID_LEN or not all(0x20 <= b <= 0x7E for b in raw):
        raise ReportError(f"feed id {feed_id!r} must be 1..{FEED_ID_LEN} printable ASCII characters")
    return raw.ljust(FEED_ID_LEN, b"\x00")


def decode_feed_id(data: bytes) -> str:
    raw = data.rstrip(b"\x00")
    # Printable ASCII excludes NUL, so zero padding is unambiguous and there is one encoding per id.
    if not raw or not all(0x20 <= b <= 0x7E for b in raw):
        raise ReportError(f"feed id bytes 0x{data.hex()} are not printable ASCII followed by zero padding")
    return raw.decode("ascii")


def _check_uint(name: str, value: int, maximum: int, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ReportError(f"{name} {value!r} must be an integer in {minimum}..{maximum}")


def _digest(tag: bytes, epoch: int, body: bytes) -> bytes:
    if not isinstance(epoch, int) or not 0 <= epoch <= U32_MAX:
        raise ReportError(f"epoch {epoch!r} does not fit in uint32")
    return keccak256(tag + epoch.to_bytes(4, "big") + keccak256(body))


@dataclass(frozen=True, slots=True)
class FeedReport:
    feed_id: str
    round: int
    price: int  # scaled by 10**decimals
    confidence: int  # half-width of the interval, same scale
    decimals: int
    observations: int
    observed_at: int  # ms, median of the observations' timestamps
    published_at: int  # ms, the leader's clock when it built the report

    def __post_init__(self) -> None:
        encode_feed_id(self.feed_id)
        _check_uint("round", self.round, U64_MAX)
        _check_uint("price", self.price, INT256_MAX, INT256_MIN)
        _check_uint("confidence", self.confidence, UINT256_MAX)
        _check_uint("decimals", self.decimals, MAX_DECIMALS)
        _check_uint("observations", self.observations, MAX_OBSERVATIONS, 1)
        _check_uint("observed_at", self.observed_at, U64_MAX)
        _check_uint("published_at", self.published_at, U64_MAX)

    def encode(self) -> bytes:
        return _REPORT.pack(
            encode_feed_id(self.feed_id),
            self.round,
            self.price.to_bytes(32, "big", signed=True),
            self.confidence.to_bytes(32, "big"),
            self.decimals,
            self.observations,
            self.observed_at,
            self.published_at,
        )

    @classmethod
    def decode(cls, data: bytes) -> "FeedReport":
        if len(data) != REPORT_LEN:
            raise ReportError(f"a v1 feed report is exactly {REPORT_LEN} bytes, got {len(data)}")
        feed_id, round_, price, confidence, decimals, observations, observed_at, published_at = _REPORT.unpack(data)
        return cls(
            feed_id=decode_feed_id(feed_id),
            round=round_,
            price=int.from_bytes(price, "big", signed=True),
            confidence=int.from_bytes(confidence, "big"),
            decimals=decimals,
            observations=observations,
            observed_at=observed_at,
            published_at=published_at,
        )

    @property
    def report_hash(self) -> bytes:
        return keccak256(self.encode())

    def digest(self, epoch: int) -> bytes:
        """What the committee signs: keccak256("TESSERA/v1/FEED" ‖ epoch:u32 ‖ keccak256(report))."""
        return _digest(TAG_FEED, epoch, self.encode())


@dataclass(frozen=True, slots=True)
class Observation:
    """One attester's own price for one round, from its own sources."""

    feed_id: str
    round: int
    member: int  # the attester's committee index (its Shamir x-coordinate)
    decimals: int  # the scale of `price`; a member configured with other decimals is caught here
    price: int
    timestamp: int  # ms

    def __post_init__(self) -> None:
        encode_feed_id(self.feed_id)
        _check_uint("round", self.round, U64_MAX)
        _check_uint("member", self.member, U16_MAX, 1)
        _check_uint("decimals", self.decimals, MAX_DECIMALS)
        _check_uint("price", self.price, INT256_MAX, INT256_MIN)
        _check_uint("timestamp", self.timestamp, U64_MAX)

    def encode(self) -> bytes:
        return _OBSERVATION.pack(
            encode_feed_id(self.feed_id),
            self.round,
            self.member,
            self.decimals,
            self.price.to_bytes(32, "big", signed=True),
            self.timestamp,
        )

    @classmethod
    def decode(cls, data: bytes) -> "Observation":
        if len(data) != OBSERVATION_LEN:
            raise ReportError(f"a v1 feed observation is exactly {OBSERVATION_LEN} bytes, got {len(data)}")
        feed_id, round_, member, decimals, price, timestamp = _OBSERVATION.unpack(data)
        return cls(
            feed_id=decode_feed_id(feed_id),
            round=round_,
            member=member,
            decimals=decimals,
            price=int.from_bytes(price, "big", signed=True),
            timestamp=timestamp,
        )

    def digest(self, epoch: int) -> bytes:
        """keccak256("TESSERA/v1/FEED" ‖ "OBS" ‖ epoch:u32 ‖ keccak256(observation)).

        The preimage is 3 bytes longer than a report digest's, so no observation digest can equal
        a report digest: a signed observation is never a usable report signature.
        """
        return _digest(OBSERVATION_TAG, epoch, self.encode())


@dataclass(frozen=True, slots=True)
class SignedObservation:
    observation: Observation
    signature: bytes  # G1 (64 bytes): the member's BLS share over observation.digest(epoch)

    @property
    def member(self) -> int:
        return self.observation.member

    def to_json(self) -> dict[str, str]:
        return {"observation": "0x" + self.observation.encode().hex(), "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, data: dict) -> "SignedObservation":
        try:
            obs = bytes.fromhex(str(data["observation"]).removeprefix("0x"))
            sig = bytes.fromhex(str(data["signature"]).removeprefix("0x"))
        except (KeyError, TypeError, ValueError):
            raise ReportError("a signed observation is {observation: 0x-hex, signature: 0x-hex}") from None
        return cls(Observation.decode(obs), sig)
