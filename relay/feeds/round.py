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
from relay.feeds.multi import FeedRoot
from relay.feeds.report import FeedError, FeedReport, ReportError, SignedObservation

OBSERVATIONS_PATH = "/v1/feeds/observations"
PROPOSALS_PATH = "/v1/feeds/proposals"
ROOT_PROPOSALS_PATH = "/v1/feeds/root_proposals"
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
class RootProposal:
    """POST /v1/feeds/root_proposals: the leader's proposals for every feed it built in one (round,
    attempt), to be signed once, over the FeedRoot of their reports (leaf order = feed id order).
    A member signs only if it would sign each proposal alone (docs/FEEDS.md "One signature per round")."""

    attempt: int
    leader: int
    proposals: tuple[Proposal, ...]

    @classmethod
    def of(cls, proposals: list[Proposal] | tuple[Proposal, ...]) -> "RootProposal":
        """Orders the proposals by feed id; refuses an empty set, mixed rounds/attempts/leaders."""
        if not proposals:
            raise RoundMessageError("a root proposal holds at least one proposal")
        first = proposals[0]
        for p in proposals:
            if (p.attempt, p.leader, p.report.round) != (first.attempt, first.leader, first.report.round):
                raise RoundMessageError(
                    f"a root proposal is one (round, attempt, leader): {p.report.feed_id} is round {p.report.round} "
                    f"attempt {p.attempt} leader {p.leader}, {first.report.feed_id} round {first.report.round} "
                    f"attempt {first.attempt} leader {first.leader}")
        return cls(first.attempt, first.leader, tuple(sorted(proposals, key=lambda p: p.report.feed_id)))

    @property
    def round(self) -> int:
        return self.proposals[0].report.round

    def feed_root(self) -> FeedRoot:
        try:
            return FeedRoot.of([p.report for p in self.proposals])
        except ReportError as exc:  # FeedRootError: too many, or two reports of one feed
            raise RoundMessageError(f"root: {exc}") from None

    def to_json(self) -> dict:
        return {"attempt": self.attempt, "leader": self.leader,
                "proposals": [{k: v for k, v in p.to_json().items() if k not in ("attempt", "leader")}
                              for p in self.proposals]}

    @classmethod
    def from_json(cls, data: object) -> "RootProposal":
        if not isinstance(data, dict):
            raise RoundMessageError("body must be a JSON object {attempt, leader, proposals: [{report, observations}]}")
        attempt, leader = _int(data, "attempt", 65535), _int(data, "leader", 65535)
        items = data.get("proposals")
        if not isinstance(items, list) or not items:
            raise RoundMessageError("proposals must be a non-empty list of {report, observations}")
        proposals = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise RoundMessageError(f"proposals[{i}] must be an object {{report, observations}}")
            try:
                proposals.append(Proposal.from_json({**item, "attempt": attempt, "leader": leader}))
            except RoundMessageError as exc:
                raise RoundMessageError(f"proposals[{i}]: {exc}") from None
        root = cls.of(proposals)
        if [p.report.feed_id for p in root.proposals] != [p.report.feed_id for p in proposals]:
            raise RoundMessageError("proposals must be in feed id order (the root's leaf order)")
        root.feed_root()  # one report per feed, at most 64
        return root


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
class RootBatch:
    """The proposals a leader gathers for one (round, attempt) before asking for one root signature.
    `building` holds the feeds whose report is still being built; the batch is signed once none is
    (or its wait is over). Each proposal's future gets that feed's signed report, or None."""

    building: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)  # every feed that joined, built or not
    proposals: dict[str, Proposal] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future] = field(default_factory=dict)
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self, feed_id: str) -> None:
        self.building.add(feed_id)
        self.seen.add(feed_id)
        self.changed.set()

    def drop(self, feed_id: str) -> None:
        """The feed's report could not be built: stop waiting for it."""
        self.building.discard(feed_id)
        self.changed.set()

    def add(self, proposal: Proposal) -> asyncio.Future:
        feed_id = proposal.report.feed_id
        self.building.discard(feed_id)
        self.proposals[feed_id] = proposal
        future = self.waiters[feed_id] = asyncio.get_running_loop().create_future()
        self.changed.set()
        return future

    @property
    def ready(self) -> bool:
        return bool(self.proposals) and not self.building

    def resolve(self, results: dict) -> None:
        for feed_id, future in self.waiters.items():
            if not future.done():
                future.set_result(results.get(feed_id))


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

