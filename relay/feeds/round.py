"""Feed rounds between attesters: the shared clock, who leads, the wire messages and per-round state.

Members agree on round numbers without talking: round r is the interval starting at r · interval_ms
on their clocks. The leader of (round, attempt) is committee.indices[(round + attempt) % n]; a
member that hears no proposal in time re-sends its observation for attempt + 1. The HTTP side and
the tasks that drive a round live in relay/feeds/node.py; this module holds what both ends of a
request must agree on (docs/FEEDS.md "Rounds between attesters").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from attest.committee import Committee
from relay.feeds.report import FeedError, FeedReport, ReportError, SignedObservation

OBSERVATIONS_PATH = "/v1/feeds/observations"
PROPOSALS_PATH = "/v1/feeds/proposals"
METRICS_PATH = "/v1/feeds/metrics"


class RoundMessageError(FeedError):
    """A round message that is malformed (HTTP 400): the sender runs another protocol version or is broken."""


class RoundRefused(FeedError):
    """A well-formed round message this member will not act on (HTTP 409); `code` is short and stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- the shared clock -----------------------------------------------------------------------------


def round_of(now_ms: int, interval_ms: int) -> int:
    return now_ms // interval_ms


def round_start_ms(round_: int, interval_ms: int) -> int:
    return round_ * interval_ms


def leader_of(committee: Committee, round_: int, attempt: int) -> int:
    """Rotating the leader by round spreads the work; adding the attempt moves past a dead one."""
    indices = committee.indices
    return indices[(round_ + attempt) % len(indices)]


# --- wire messages --------------------------------------------------------------------------------


def _int(data: dict, name: str, maximum: int = 2**64 - 1) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise RoundMessageError(f"{name} must be an integer in 0..{maximum}")
    return value


def _hex(data: dict, name: str) -> bytes:
    value = data.get(name)
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RoundMessageError(f"{name} must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RoundMessageError(f"{name} is not valid hex") from None


def _signed_observation(data: object, where: str) -> SignedObservation:
    if not isinstance(data, dict):
        raise RoundMessageError(f"{where} must be an object {{observation, signature}}")
    try:
        return SignedObservation.from_json(data)
    except ReportError as exc:
        raise RoundMessageError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ObservationMessage:
    """POST /v1/feeds/observations: a member's signed observation for the leader of `attempt`."""

    attempt: int
    signed: SignedObservation

    def to_json(self) -> dict:
        return {"attempt": self.attempt, **self.signed.to_json()}

    @classmethod
    def from_json(cls, data: object) -> "ObservationMessage":
        if not isinstance(data, dict):
            raise RoundMessageError("body must be a JSON object {attempt, observation, signature}")
        return cls(_int(data, "attempt", 65535), _signed_observation(data, "observation"))


@dataclass(frozen=True, slots=True)
class Proposal:
    """POST /v1/feeds/proposals: the leader's report and the signed observations it follows from."""

    attempt: int
    leader: int
    report: FeedReport
    observations: tuple[SignedObservation, ...]

    def to_json(self) -> dict:
        return {
            "attempt": self.attempt,
            "leader": self.leader,
            "report": "0x" + self.report.encode().hex(),
            "observations": [s.to_json() for s in self.observations],
        }

    @classmethod
    def from_json(cls, data: object) -> "Proposal":
        if not isinstance(data, dict):
            raise RoundMessageError("body must be a JSON object {attempt, leader, report, observations}")
        try:
            report = FeedReport.decode(_hex(data, "report"))
        except ReportError as exc:
            raise RoundMessageError(f"report: {exc}") from None
        items = data.get("observations")
        if not isinstance(items, list):
            raise RoundMessageError("observations must be a list of {observation, signature}")
        observations = tuple(_signed_observation(item, f"observations[{i}]") for i, item in enumerate(items))
        return cls(_int(data, "attempt", 65535), _int(data, "leader", 65535), report, observations)


@dataclass(frozen=True, slots=True)
class PartialReply:
    """The 200 answer to a proposal: the member's partial signature over report.digest(epoch)."""

    member: int
    signature: bytes

    def to_json(self) -> dict:
        return {"member": self.member, "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, data: object) -> "PartialReply":
        if not isinstance(data, dict):
            raise RoundMessageError("a partial reply is a JSON object {member, signature}")
        signature = _hex(data, "signature")
        if len(signature) != 64:
            raise RoundMessageError(f"signature must be 64 bytes, got {len(signature)}")
        return cls(_int(data, "member", 65535), signature)


# --- per-round state ------------------------------------------------------------------------------


@dataclass
class MemberRound:
    """What one member knows about one (feed, round). Memory only; the one rule that matters for
    safety is `signed`: once set, this member signs no other report for the round."""

    own: SignedObservation | None = None
    proposal_seen: asyncio.Event = field(default_factory=asyncio.Event)
    signed: tuple[bytes, bytes] | None = None  # (report digest, partial signature)


@dataclass
class LeaderRound:
    """The observations a leader collected for one (feed, round, attempt)."""

    first_at: float  # loop time of the first observation
    received: dict[int, list[SignedObservation]] = field(default_factory=dict)  # member -> distinct valid ones
    threshold_at: float | None = None  # loop time the t-th member's observation arrived
    closed: str | None = None  # "proposed" or "gave_up": late observations are refused
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def members(self) -> int:
        return len(self.received)

    def add(self, signed: SignedObservation, threshold: int, now: float) -> None:
        same = self.received.setdefault(signed.member, [])
        if signed not in same:
            same.append(signed)  # a second, different one: build_report drops the member
        if self.threshold_at is None and self.members >= threshold:
            self.threshold_at = now
        self.changed.set()

    def all_signed(self) -> list[SignedObservation]:
        return [s for items in self.received.values() for s in items]

