"""Aggregation of signed observations into a report, the attesters' checks, and the push rule.

A real 3-of-4 committee (trusted dealer, zksnake backend) signs the observations.
"""

from __future__ import annotations

import dataclasses
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import attest
from relay.feeds import (
    FeedConfig,
    FeedReport,
    NotEnoughObservationsError,
    Observation,
    PushPolicy,
    ReportRejected,
    SignedObservation,
    aggregate,
    build_report,
    check_proposal,
    lower_median,
    median_absolute_deviation,
    scale_price,
    should_push,
    sign_observation,
    within_bps,
)

BACKEND = "zksnake"
ROUND = 9
NOW = 1_795_431_723_000
FEED = FeedConfig.model_validate(
    {
        "id": "ETH/USD",
        "decimals": 8,
        "tolerance_bps": 100,  # 1 %
        "deviation_bps": 50,
        "heartbeat_s": 3600,
        "sources": [{"kind": "http_json", "url": "https://example.org/t", "price_path": "price"}],
    }
)
# Four honest views of ETH/USD within 0.2 % of each other, at 8 decimals.
HONEST = {1: 345_600_000_000, 2: 345_650_000_000, 3: 345_700_000_000, 4: 345_900_000_000}


@pytest.fixture(scope="module")
def committee_and_shares():
    return attest.deal(4, 3, epoch=5, rng=random.Random(2026), backend=BACKEND)


def observe(member: int, price: int, ts_offset: int = 0, round_: int = ROUND) -> Observation:
    return Observation("ETH/USD", round_, member, 8, price, NOW - 400 + 100 * member + ts_offset)


def signed_views(committee_and_shares, prices: dict[int, int]) -> list[SignedObservation]:
    committee, shares = committee_and_shares
    return [sign_observation(shares[m - 1], observe(m, p), committee.epoch, BACKEND) for m, p in prices.items()]


def check(committee, report, observations, own, now=NOW + 50) -> None:
    check_proposal(FEED, committee, report, observations, own=own, now_ms=now, backend=BACKEND)


# --- statistics -------------------------------------------------------------------------------------


def test_lower_median_and_mad() -> None:
    assert lower_median([5]) == 5
    assert lower_median([4, 1, 3, 2]) == 2  # even count: the lower of the two middle values
    assert lower_median([-3, -1, -2]) == -2
    assert median_absolute_deviation([10, 11, 12, 1000], 11) == 1
    with pytest.raises(ValueError):
        lower_median([])


def test_scale_price_rounds_half_to_even() -> None:
    assert scale_price(Decimal("3456.78"), 8) == 345_678_000_000
    assert scale_price(Decimal("1.005"), 2) == 100
    assert scale_price(Decimal("1.015"), 2) == 102
    assert scale_price(Decimal("97013.575"), 0) == 97014


def test_within_bps_is_exact() -> None:
    assert within_bps(101, 100, 100) and not within_bps(102, 100, 100)
    assert within_bps(99, 100, 100) and not within_bps(98, 100, 100)


# --- leader -----------------------------------------------------------------------------------------


def test_build_report_from_four_honest_observations(committee_and_shares) -> None:
    committee, _ = committee_and_shares
    built = build_report(FEED, committee, ROUND, signed_views(committee_and_shares, HONEST), NOW, BACKEND)
    report = built.report
    assert report.price == 345_650_000_000  # lower median of the four
    assert report.confidence == 50_000_000  # deviations 50M, 0, 50M, 250M -> lower median 50M (0.5 USD)
    assert report.observations == 4 and report.decimals == 8 and report.round == ROUND
    assert report.observed_at == NOW - 400 + 200  # lower median of the timestamps
    assert report.published_at == NOW
    assert [s.member for s in built.observations] == [1, 2, 3, 4]
    assert built.rejected == {}
    for member in HONEST:
        own = observe(member, HONEST[member])
        check(committee, report, built.observations, own)  # every honest member signs


def test_leader_refuses_below_threshold_with_reasons(committee_and_shares) -> None:
    committee, shares = committee_and_shares
    views = signed_views(committee_and_shares, {1: HONEST[1], 2: HONEST[2]})
    stale = sign_observation(shares[2], observe(3, HONEST[3], round_=ROUND - 1), committee.epoch, BACKEND)
    forged = SignedObservation(observe(4, HONEST[4]), views[0].signature)  # member 1's signature
    with pytest.raises(NotEnoughObservationsError) as info:
        build_report(FEED, committee, ROUND, views + [stale, forged], NOW, BACKEND)
    message = str(info.value)
    assert "2 valid observations, the threshold is 3" in message
    assert "member 3: it is for round 8, not 9" in message
    assert "member 4: member 4's signature does not verify" in message
    assert set(info.value.rejected) == {3, 4}


def test_forged_copy_does_not_exclude_the_real_member_but_equivocation_does(committee_and_shares) -> None:
    committee, shares = committee_and_shares
    views = signed_views(committee_and_shares, HONEST)
    forged = SignedObservation(observe(2, 1), views[0].signature)  # someone claims to be member 2
    built = build_report(FEED, committee, ROUND, [forged] + views, NOW, BACKEND)
    assert [s.member for s in built.observations] == [1, 2, 3, 4]
    second = sign_observation(shares[1], observe(2, HONEST[2] + 1), committee.epoch, BACKEND)
    built = build_report(FEED, committee, ROUND, views + [second], NOW, BACKEND)
    assert [s.member for s in built.observations] == [1, 3, 4]
    assert built.rejected == {2: "it signed two different observations for this round"}


# --- one outlier among n = 4, t = 3 ---------------------------------------------------------------


@pytest.mark.parametrize("outlier", [1, 0, 345_650_000_000 * 1000, 2**255 - 1, -(2**255)])
def test_one_outlier_cannot_move_the_median_beyond_tolerance(committee_and_shares, outlier: int) -> None:
    committee, _ = committee_and_shares
    prices = dict(HONEST)
    prices[4] = outlier  # member 4 lies (or its sources are broken)
    signed = signed_views(committee_and_shares, prices)
    built = build_report(FEED, committee, ROUND, signed, NOW, BACKEND)
    assert min(HONEST[m] for m in (1, 2, 3)) <= built.report.price <= max(HONEST[m] for m in (1, 2, 3))
    for member in (1, 2, 3):
        check(committee, built.report, built.observations, observe(member, HONEST[member]))
    # A leader that picks any 3 of the 4 (keeping the liar) still lands among the honest values.
    for dropped in (1, 2, 3):
        subset = [s for s in signed if s.member != dropped]
        report = aggregate([s.observation for s in subset], NOW)
        assert min(HONEST[m] for m in (1, 2, 3)) <= report.price <= max(HONEST[m] for m in (1, 2, 3))


@settings(max_examples=400, deadline=None)
@given(
    center=st.integers(10**6, 10**30),
    spreads=st.lists(st.integers(-49, 49), min_size=3, max_size=3),  # honest views within ±0.49 %
    outlier=st.integers(-(2**255), 2**255 - 1),
    keep=st.sampled_from([(0, 1, 2, 3), (0, 1, 3), (0, 2, 3), (1, 2, 3)]),
)
def test_property_one_outlier_in_any_threshold_subset_stays_within_tolerance(center, spreads, outlier, keep) -> None:
    honest = [center + center * s // 10_000 for s in spreads]
    values = honest + [outlier]
    observations = [observe(i + 1, values[i]) for i in keep]
    price = aggregate(observations, NOW).price
    assert min(honest) <= price <= max(honest)
    # Honest views lie within 1 % of each other, so the median is within tolerance of every one.
    assert all(within_bps(price, own, FEED.tolerance_bps) for own in honest)


# --- attester catches a dishonest leader -------------------------------------------------------------


@pytest.fixture(scope="module")
def honest_round(committee_and_shares):
    committee, _ = committee_and_shares
    return build_report(FEED, committee, ROUND, signed_views(committee_and_shares, HONEST), NOW, BACKEND)


def _reject(committee, report, observations, own, code: str, text: str = "") -> None:
    with pytest.raises(ReportRejected) as info:
        check(committee, report, observations, own)
    assert info.value.code == code, str(info.value)
    assert text in str(info.value)


def test_leader_dropping_an_observation_is_caught(committee_and_shares, honest_round) -> None:
    committee, _ = committee_and_shares
    report, observations = honest_round.report, honest_round.observations
    own1 = observe(1, HONEST[1])
    # Drops member 4's observation but keeps the report of all four.
    _reject(committee, report, observations[:3], own1, "count_mismatch", "counts 4 observations but 3 came with it")
    # Drops member 1's and relabels the count: the recomputed median differs.
    relabelled = dataclasses.replace(report, observations=3)
    _reject(committee, relabelled, observations[1:], own1, "mismatch", "price 345650000000 (recomputed 345700000000)")
    # Drops member 4's and relabels: here the three left give the same numbers, a consistent report
    # of three that members 1..3 may sign, but member 4 sees its observation left out.
    check(committee, relabelled, observations[:3], own1)
    _reject(committee, relabelled, observations[:3], observe(4, HONEST[4]), "own_observation_dropped", "member 4")
    # Recomputes honestly from three, leaving out member 1: member 1 notices its view is gone.
    without_1 = aggregate([s.observation for s in observations[1:]], NOW)
    _reject(committee, without_1, observations[1:], own1, "own_observation_dropped", "member 1")
    check(committee, without_1, observations[1:], observe(2, HONEST[2]))  # the others may still sign
    # Below the threshold.
    two = aggregate([s.observation for s in observations[:2]], NOW)
    _reject(committee, two, observations[:2], own1, "too_few_observations", "2 observations, the threshold is 3")


@pytest.mark.parametrize(
    "field, value",
    [("price", 345_900_000_000), ("confidence", 0), ("observed_at", NOW), ("round", ROUND + 1), ("observations", 5)],
)
def test_leader_editing_the_report_is_caught(committee_and_shares, honest_round, field, value) -> None:
    committee, _ = committee_and_shares
    edited = dataclasses.replace(honest_round.report, **{field: value})
    own = observe(2, HONEST[2])
    expected = {"round": "bad_observation", "observations": "count_mismatch"}.get(field, "mismatch")
    _reject(committee, edited, honest_round.observations, own, expected)


def test_leader_editing_an_observation_is_caught(committee_and_shares, honest_round) -> None:
    committee, shares = committee_and_shares
    observations = list(honest_round.observations)
    victim = observations[3]
    observations[3] = SignedObservation(dataclasses.replace(victim.observation, price=HONEST[2]), victim.signature)
    report = aggregate([s.observation for s in observations], NOW)
    _reject(committee, report, observations, observe(1, HONEST[1]), "bad_observation", "member 4's signature does not verify")
    duplicated = list(honest_round.observations[:3]) + [honest_round.observations[0]]
    report = aggregate([s.observation for s in duplicated], NOW)
    _reject(committee, report, duplicated, observe(1, HONEST[1]), "duplicate_member", "member 1")
    other_epoch = sign_observation(shares[3], victim.observation, committee.epoch + 1, BACKEND)
    replayed = list(honest_round.observations[:3]) + [other_epoch]
    _reject(committee, honest_round.report, replayed, observe(1, HONEST[1]), "bad_observation")


def test_attester_refuses_a_median_outside_its_tolerance(committee_and_shares, honest_round) -> None:
    committee, _ = committee_and_shares
    # This attester's sources see 2 % higher than the others'.
    prices = dict(HONEST)
    prices[1] = HONEST[2] * 102 // 100
    built = build_report(FEED, committee, ROUND, signed_views(committee_and_shares, prices), NOW, BACKEND)
    _reject(committee, built.report, built.observations, observe(1, prices[1]), "out_of_tolerance", "more than 100 bps")
    _reject(committee, built.report, built.observations, None, "no_own_view")


def test_attester_refuses_a_report_published_far_from_its_clock(committee_and_shares, honest_round) -> None:
    committee, _ = committee_and_shares
    with pytest.raises(ReportRejected) as info:
        check(committee, honest_round.report, honest_round.observations, observe(1, HONEST[1]), now=NOW + 60_000)
    assert info.value.code == "clock_skew" and "NTP" in str(info.value)


def test_wrong_feed_or_decimals_are_refused(committee_and_shares, honest_round) -> None:
    committee, _ = committee_and_shares
    other = FEED.model_copy(update={"decimals": 6})
    with pytest.raises(ReportRejected) as info:
        check_proposal(other, committee, honest_round.report, honest_round.observations,
                       own=observe(1, HONEST[1]), now_ms=NOW, backend=BACKEND)
    assert info.value.code == "wrong_decimals"


def test_report_signature_combines_and_verifies(committee_and_shares, honest_round) -> None:
    committee, shares = committee_and_shares
    digest = honest_round.report.digest(committee.epoch)
    partials = [attest.partial_sign(shares[i], digest, BACKEND) for i in (0, 2, 3)]
    result = attest.combine(committee, digest, partials, backend=BACKEND)
    assert result.ok and committee.verify(digest, result.signature, BACKEND)
    # An observation signature is never a report signature (separate digests).
    obs_sig = honest_round.observations[0].signature
    assert not attest.verify_partial(committee, attest.PartialSignature(1, obs_sig), digest, BACKEND)


# --- push rule -----------------------------------------------------------------------------------------


def _pushed(price: int, round_: int = 1, published_at: int = NOW) -> FeedReport:
    return FeedReport("ETH/USD", round_, price, 0, 8, 3, published_at - 100, published_at)


@pytest.mark.parametrize(
    "last, new, now, push, reason",
    [
        (None, _pushed(100_000, 1), NOW, True, "first report"),
        (_pushed(100_000, 1), _pushed(100_500, 2), NOW + 1, True, "moved ≥ 50 bps"),
        (_pushed(100_000, 1), _pushed(99_500, 2), NOW + 1, True, "moved ≥ 50 bps"),
        (_pushed(100_000, 1), _pushed(100_499, 2), NOW + 1, False, "within deviation and heartbeat"),
        (_pushed(100_000, 1), _pushed(100_001, 2), NOW + 3_600_000, True, "heartbeat"),
        (_pushed(100_000, 1), _pushed(100_001, 2), NOW + 3_599_999, False, "within"),
        (_pushed(100_000, 5), _pushed(200_000, 5), NOW + 9_999_999, False, "not newer"),
        (_pushed(0, 1), _pushed(1, 2), NOW, True, "moved"),
        (_pushed(0, 1), _pushed(0, 2), NOW, False, "within"),
    ],
)
def test_should_push(last, new, now, push, reason) -> None:
    decision = should_push(last, new, now, PushPolicy.for_feed(FEED))
    assert decision.push is push
    assert reason in decision.reason
