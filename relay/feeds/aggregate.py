"""From observations to a report, and the checks that keep a leader honest (docs/FEEDS.md).

Per round every attester turns its sources' quotes into one signed Observation; the leader combines
≥ t of them into a FeedReport; each attester recomputes that report from the same signed
observations (it must come out identical) and compares the median with its own view before it
returns a partial signature. All arithmetic is on integers, so every node gets the same bytes.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Mapping, Sequence

import attest
from attest.committee import Committee, KeyShare
from relay.feeds.config import FeedConfig
from relay.feeds.report import (
    INT256_MAX,
    INT256_MIN,
    MAX_OBSERVATIONS,
    FeedError,
    FeedReport,
    Observation,
    SignedObservation,
)
from relay.feeds.sources import MAX_FUTURE_SKEW_MS, Quote

BPS = 10_000

# The time limits every chain applies to an update (contracts/evm/src/feeds/FeedStore.sol,
# contracts/solana/src/feeds.c; docs/FEEDS.md "Time bounds"). The committee never signs a report
# that breaks them, so an honest report is never refused for its times.
MAX_OBSERVED_AFTER_PUBLISHED_MS = 60_000  # observed_at ≤ published_at + this
MAX_AHEAD_OF_CHAIN_MS = 120_000  # observed_at and published_at ≤ the chain's clock + this


class NotEnoughObservationsError(FeedError):
    """Fewer than t valid signed observations: the leader cannot build a report this round."""

    def __init__(self, message: str, rejected: Mapping[int, str] | None = None) -> None:
        super().__init__(message)
        self.rejected = dict(rejected or {})


class NotEnoughSourcesError(FeedError):
    """Too few of an attester's own sources answered for it to observe the feed this round."""

    def __init__(self, message: str, failures: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.failures = dict(failures or {})


class ReportRejected(FeedError):
    """An attester refuses to sign a proposed report; `code` is short and stable (for metrics)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- deterministic statistics ------------------------------------------------------------------


def lower_median(values: Sequence[int]) -> int:
    """The lower median: for an even count the smaller of the two middle values.

    It is always one of the inputs, so a report's price is a price some attester signed, and
    there is no rounding rule for Solidity or C to reproduce.
    """
    if not values:
        raise ValueError("the median of no values is undefined")
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def median_absolute_deviation(values: Sequence[int], center: int) -> int:
    """Lower median of |v − center|: at least ⌈n/2⌉ of the values lie within center ± it.

    Like the median it ignores fewer than half of the values whatever they are, so one lying
    attester can neither move the price nor blow up the confidence interval.
    """
    return lower_median([abs(v - center) for v in values])


def scale_price(price: Decimal, decimals: int) -> int:
    """A source's decimal price as an integer scaled by 10**decimals, rounding half to even."""
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        scaled = (price * (Decimal(10) ** decimals)).to_integral_value(rounding=decimal.ROUND_HALF_EVEN)
    value = int(scaled)
    if not INT256_MIN <= value <= INT256_MAX:
        raise FeedError(f"price {price} scaled by 10^{decimals} does not fit in int256")
    return value


def within_bps(value: int, reference: int, bps: int) -> bool:
    """|value − reference| ≤ bps/10_000 · |reference|, exactly (integers only)."""
    return abs(value - reference) * BPS <= bps * abs(reference)


# --- time bounds -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The signed timestamps (unix ms) a member accepts at one moment, both ends included."""

    earliest: int
    latest: int

    def problem(self, what: str, value: int) -> str | None:
        if value > self.latest:
            return (f"{what} {value} is {value - self.latest} ms later than this member accepts (latest {self.latest}); "
                    "check the clocks (NTP)")
        if value < self.earliest:
            return (f"{what} {value} is {self.earliest - value} ms earlier than this member accepts "
                    f"(earliest {self.earliest}); check the clocks (NTP)")
        return None


def max_quote_age_ms(feed: FeedConfig) -> int:
    return int(max(source.max_age_s for source in feed.sources) * 1000)


def time_window(feed: FeedConfig, now_ms: int, max_skew_ms: int, round_start_ms: int | None = None) -> TimeWindow:
    """Where an honest member's signed timestamps can lie, seen from a clock that reads `now_ms`.

    Latest: a member observes before anyone sees its observation, its quotes are at most
    MAX_FUTURE_SKEW_MS ahead of its clock (sources.check_fresh), and its clock is at most
    `max_skew_ms` ahead of this one. Earliest: a member observes a round once it has started on its
    own clock, with quotes at most the feed's largest `max_age_s` old (plus `max_skew_ms` of slack);
    without `round_start_ms` there is no lower bound (FeedNode always passes it).
    A timestamp outside these bounds comes from a broken or lying member: counted, it would let
    ⌈(t+1)/2⌉ members move a report's observed_at (the median) anywhere, e.g. to 2^64 − 1, after
    which every chain refuses each later report as older — a frozen feed.
    """
    earliest = 0 if round_start_ms is None else max(0, round_start_ms - max_quote_age_ms(feed) - max_skew_ms)
    return TimeWindow(earliest=earliest, latest=now_ms + max_skew_ms + MAX_FUTURE_SKEW_MS)


def report_time_problem(report: FeedReport) -> str | None:
    """The chains' own rule between a report's two timestamps (the clock rule needs the chain)."""
    if report.observed_at > report.published_at + MAX_OBSERVED_AFTER_PUBLISHED_MS:
        return (f"observed_at {report.observed_at} is {report.observed_at - report.published_at} ms after published_at "
                f"{report.published_at}; every chain refuses more than {MAX_OBSERVED_AFTER_PUBLISHED_MS} ms")
    return None


# --- attester: own observation -----------------------------------------------------------------


def own_observation(
    feed: FeedConfig, round_: int, member: int, quotes: Mapping[str, Quote], failures: Mapping[str, str] | None = None
) -> Observation:
    """The attester's view: the lower median of its working sources (needs feed.min_sources)."""
    if len(quotes) < feed.min_sources:
        detail = "; ".join(f"{name}: {why}" for name, why in (failures or {}).items()) or "no failures reported"
        raise NotEnoughSourcesError(
            f"feed {feed.id} round {round_}: {len(quotes)} of {len(feed.sources)} sources answered, "
            f"min_sources is {feed.min_sources} ({detail}); fix or add sources",
            failures,
        )
    prices = [scale_price(q.price, feed.decimals) for q in quotes.values()]
    return Observation(
        feed_id=feed.id,
        round=round_,
        member=member,
        decimals=feed.decimals,
        price=lower_median(prices),
        timestamp=lower_median([q.timestamp for q in quotes.values()]),
    )


def sign_observation(
    share: KeyShare, observation: Observation, epoch: int, backend: attest.Backend | str | None = None
) -> SignedObservation:
    if share.index != observation.member:
        raise FeedError(f"share {share.index} cannot sign an observation of member {observation.member}")
    partial = attest.partial_sign(share, observation.digest(epoch), backend)
    return SignedObservation(observation, partial.signature)


def observation_problem(
    committee: Committee,
    signed: SignedObservation,
    feed_id: str,
    round_: int,
    decimals: int,
    backend: attest.Backend | str | None = None,
    *,
    window: TimeWindow | None = None,
) -> str | None:
    """Why a signed observation cannot count this round, or None when it can (its timestamp is
    checked against `window` when one is given: see time_window)."""
    obs = signed.observation
    if obs.feed_id != feed_id:
        return f"it is for feed {obs.feed_id!r}, not {feed_id!r}"
    if obs.round != round_:
        return f"it is for round {obs.round}, not {round_}"
    if obs.decimals != decimals:
        return f"its price has {obs.decimals} decimals, the feed has {decimals} (the member's config differs)"
    if obs.member not in committee.indices:
        return f"member {obs.member} is not in the committee of epoch {committee.epoch}"
    if window is not None:
        problem = window.problem("its timestamp", obs.timestamp)
        if problem is not None:
            return problem
    partial = attest.PartialSignature(index=obs.member, signature=bytes(signed.signature))
    if not attest.verify_partial(committee, partial, obs.digest(committee.epoch), backend):
        return f"member {obs.member}'s signature does not verify against its public share"
    return None


# --- leader: build ------------------------------------------------------------------------------


def aggregate(observations: Sequence[Observation], published_at: int) -> FeedReport:
    """The report of exactly these observations (same feed, round and decimals; already checked)."""
    if not observations:
        raise NotEnoughObservationsError("no observations to aggregate")
    if len(observations) > MAX_OBSERVATIONS:
        raise FeedError(f"{len(observations)} observations; a report counts at most {MAX_OBSERVATIONS}")
    first = observations[0]
    prices = [o.price for o in observations]
    price = lower_median(prices)
    return FeedReport(
        feed_id=first.feed_id,
        round=first.round,
        price=price,
        confidence=median_absolute_deviation(prices, price),
        decimals=first.decimals,
        observations=len(observations),
        observed_at=lower_median([o.timestamp for o in observations]),
        published_at=published_at,
    )


@dataclass(frozen=True, slots=True)
class BuiltReport:
    report: FeedReport
    observations: tuple[SignedObservation, ...]  # what the attesters need to recompute it, by member
    rejected: dict[int, str] = field(default_factory=dict)  # member -> why its observation was left out


def build_report(
    feed: FeedConfig,
    committee: Committee,
    round_: int,
    signed: Sequence[SignedObservation],
    now_ms: int,
    backend: attest.Backend | str | None = None,
    *,
    max_skew_ms: int = 10_000,
    round_start_ms: int | None = None,
) -> BuiltReport:
    """The leader's report from every valid signed observation it received (needs ≥ t).

    Observations with a timestamp outside time_window are left out, and none later than
    now_ms + MAX_OBSERVED_AFTER_PUBLISHED_MS counts, so the report's observed_at (their median)
    always lies within what members and chains accept.
    """
    bounds = time_window(feed, now_ms, max_skew_ms, round_start_ms)
    window = TimeWindow(bounds.earliest, min(bounds.latest, now_ms + MAX_OBSERVED_AFTER_PUBLISHED_MS))
    invalid: dict[int, str] = {}
    valid: dict[int, SignedObservation] = {}
    equivocating: set[int] = set()
    for item in signed:
        # Signatures first: anyone can send bytes claiming to be member m, only m can sign them.
        problem = observation_problem(committee, item, feed.id, round_, feed.decimals, backend, window=window)
        if problem is not None:
            invalid.setdefault(item.member, problem)
        elif item.member in valid and valid[item.member].observation != item.observation:
            equivocating.add(item.member)
        else:
            valid[item.member] = item
    rejected = {m: why for m, why in invalid.items() if m not in valid}
    for member in equivocating:
        # Two different signed views of one round: count neither.
        del valid[member]
        rejected[member] = "it signed two different observations for this round"
    if len(valid) < committee.threshold:
        detail = "; ".join(f"member {m}: {why}" for m, why in sorted(rejected.items()))
        raise NotEnoughObservationsError(
            f"feed {feed.id} round {round_}: {len(valid)} valid observations, the threshold is "
            f"{committee.threshold}" + (f" (left out: {detail})" if detail else "") + "; wait for more attesters",
            rejected,
        )
    chosen = tuple(valid[m] for m in sorted(valid))
    report = aggregate([s.observation for s in chosen], published_at=now_ms)
    problem = window.problem("observed_at", report.observed_at) or report_time_problem(report)
    if problem is not None:  # the median of in-window timestamps is in the window: a bug if reached
        raise FeedError(f"feed {feed.id} round {round_}: built a report members would refuse: {problem}")
    return BuiltReport(report=report, observations=chosen, rejected=rejected)


# --- attester: check before signing ---------------------------------------------------------------


def check_proposal(
    feed: FeedConfig,
    committee: Committee,
    report: FeedReport,
    observations: Sequence[SignedObservation],
    *,
    own: Observation | None,
    now_ms: int,
    max_skew_ms: int = 10_000,
    round_start_ms: int | None = None,
    backend: attest.Backend | str | None = None,
) -> None:
    """Raise ReportRejected unless this attester should sign `report`.

    `own` is this attester's observation for the round, the one it sent the leader: the report
    must include it (a leader that drops observations it received is caught by their authors)
    and its median must lie within feed.tolerance_bps of it. Every observation's timestamp and
    the report's observed_at must lie in time_window(feed, now_ms, max_skew_ms, round_start_ms),
    published_at within ±max_skew_ms of now_ms, and observed_at no later than published_at +
    MAX_OBSERVED_AFTER_PUBLISHED_MS: a minority that signs absurd timestamps cannot get a report
    through this member (docs/FEEDS.md "Time bounds").
    """
    window = time_window(feed, now_ms, max_skew_ms, round_start_ms)
    if report.feed_id != feed.id:
        raise ReportRejected("wrong_feed", f"the report is for feed {report.feed_id!r}, this check is for {feed.id!r}")
    if report.decimals != feed.decimals:
        raise ReportRejected(
            "wrong_decimals", f"feed {feed.id}: the report has {report.decimals} decimals, the config says {feed.decimals}"
        )
    if report.observations != len(observations):
        raise ReportRejected(
            "count_mismatch",
            f"feed {feed.id} round {report.round}: the report counts {report.observations} observations "
            f"but {len(observations)} came with it",
        )
    seen: set[int] = set()
    for item in observations:
        if item.member in seen:
            raise ReportRejected("duplicate_member", f"member {item.member}'s observation is counted twice")
        seen.add(item.member)
        problem = observation_problem(committee, item, feed.id, report.round, feed.decimals, backend)
        if problem is not None:
            raise ReportRejected("bad_observation", f"feed {feed.id} round {report.round}: an observation is invalid: {problem}")
        problem = window.problem(f"member {item.member}'s observation timestamp", item.observation.timestamp)
        if problem is not None:
            raise ReportRejected("timestamp_out_of_bounds", f"feed {feed.id} round {report.round}: {problem}")
    if len(observations) < committee.threshold:
        raise ReportRejected(
            "too_few_observations",
            f"feed {feed.id} round {report.round}: {len(observations)} observations, the threshold is {committee.threshold}",
        )
    expected = aggregate([s.observation for s in observations], published_at=report.published_at)
    if expected != report:
        differ = [
            f"{name} {getattr(report, name)} (recomputed {getattr(expected, name)})"
            for name in FeedReport.__dataclass_fields__
            if getattr(report, name) != getattr(expected, name)
        ]
        raise ReportRejected(
            "mismatch", f"feed {feed.id} round {report.round}: the report does not follow from its observations: " + ", ".join(differ)
        )
    if abs(report.published_at - now_ms) > max_skew_ms:
        raise ReportRejected(
            "clock_skew",
            f"published_at {report.published_at} is {report.published_at - now_ms} ms from this attester's clock "
            f"(allowed ±{max_skew_ms} ms); check both clocks (NTP)",
        )
    problem = window.problem("observed_at", report.observed_at) or report_time_problem(report)
    if problem is not None:
        raise ReportRejected("timestamp_out_of_bounds", f"feed {feed.id} round {report.round}: {problem}")
    if own is None:
        raise ReportRejected(
            "no_own_view", f"feed {feed.id} round {report.round}: this attester has no observation of its own to compare with"
        )
    if (own.feed_id, own.round, own.decimals) != (feed.id, report.round, feed.decimals):
        raise ReportRejected("no_own_view", f"the own observation given is for {own.feed_id} round {own.round}, not this report")
    if own.member not in seen:
        raise ReportRejected(
            "own_observation_dropped",
            f"feed {feed.id} round {report.round}: the leader left out this attester's observation (member {own.member})",
        )
    if not within_bps(report.price, own.price, feed.tolerance_bps):
        raise ReportRejected(
            "out_of_tolerance",
            f"feed {feed.id} round {report.round}: median {report.price} is more than {feed.tolerance_bps} bps "
            f"from this attester's own view {own.price}",
        )


# --- on-chain pusher ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushDecision:
    push: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PushPolicy:
    deviation_bps: int
    heartbeat_s: int

    @classmethod
    def for_feed(cls, feed: FeedConfig) -> "PushPolicy":
        return cls(deviation_bps=feed.deviation_bps, heartbeat_s=feed.heartbeat_s)

    def should_push(self, last_pushed: FeedReport | None, new: FeedReport, now_ms: int) -> PushDecision:
        if last_pushed is None:
            return PushDecision(True, "first report of the feed")
        if new.round <= last_pushed.round or new.observed_at < last_pushed.observed_at:
            return PushDecision(False, f"round {new.round} is not newer than the pushed round {last_pushed.round}")
        moved = new.price - last_pushed.price
        if moved != 0 and abs(moved) * BPS >= self.deviation_bps * abs(last_pushed.price):
            return PushDecision(True, f"price moved ≥ {self.deviation_bps} bps ({last_pushed.price} → {new.price})")
        age_ms = now_ms - last_pushed.published_at
        if age_ms >= self.heartbeat_s * 1000:
            return PushDecision(True, f"heartbeat: the pushed report is {age_ms // 1000} s old (heartbeat {self.heartbeat_s} s)")
        return PushDecision(False, "within deviation and heartbeat")


def should_push(last_pushed: FeedReport | None, new: FeedReport, now_ms: int, policy: PushPolicy) -> PushDecision:
    return policy.should_push(last_pushed, new, now_ms)
