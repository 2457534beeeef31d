"""The feed-freeze attack (issue 13) and the time bounds that stop it (docs/FEEDS.md "Time bounds").

The attack: ⌈(t+1)/2⌉ members of a t-of-n committee (2 of a 3-of-4) sign observations with
timestamp 2^64 − 1; a report built from exactly t observations that include one honest member's
has observed_at = 2^64 − 1 (the lower median), and once stored every later report is "older".
Off-chain, honest FeedNode members refuse to sign it and an honest leader never builds it; on-chain,
a report signed anyway (here by the dealt committee itself) is refused by the Solana program
(LiteSVM below; the EVM FeedStore: contracts/evm/test/FeedsStore.t.sol and
tests/e2e/test_evm_feed_time_bounds.py)."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest
from solders.transaction_metadata import TransactionMetadata

import attest
from adapters.solana.feeds import FeedAccount, feed_address, update_feed_ix
from adapters.solana.program import ProgramErrorCode, init_committee_ix
from relay.feeds import FeedConfig, sign_observation
from relay.feeds.aggregate import (
    MAX_AHEAD_OF_CHAIN_MS,
    MAX_OBSERVED_AFTER_PUBLISHED_MS,
    NotEnoughObservationsError,
    ReportRejected,
    aggregate,
    build_report,
    check_proposal,
    time_window,
)
from relay.feeds.config import FeedRoundSection
from relay.feeds.node import FeedNode
from relay.feeds.report import FeedReport, Observation, SignedObservation
from relay.feeds.round import (ObservationMessage, Proposal, RoundMessageError, RoundRefused, leader_of, round_of,
                               round_start_ms)
from relay.feeds.signed import SignedReport
from relay.protocol import U64_MAX
from tests.support.committee import Dealt
from tests.support.solana import DOMAIN, Chain, deployed_chain

SETTINGS = FeedRoundSection(interval_ms=1000, collect_ms=20, leader_timeout_ms=150)
FEED = FeedConfig.model_validate(
    {"id": "ETH/USD", "decimals": 8, "tolerance_bps": 100,
     "sources": [{"kind": "http_json", "url": "https://example.org/eth", "price_path": "price"}]}
)
EPOCH = 3
MALICIOUS = (1, 2)  # ⌈(t+1)/2⌉ = 2 of a 3-of-4 committee
HONEST = (3, 4)


@pytest.fixture(scope="module")
def dealt() -> Dealt:
    committee, shares = attest.deal(4, 3, epoch=EPOCH, rng=random.Random(1313))
    return Dealt(committee, shares)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def observation(dealt: Dealt, member: int, round_: int, price: int, timestamp: int) -> SignedObservation:
    return sign_observation(dealt.shares[member - 1], Observation(FEED.id, round_, member, 8, price, timestamp), EPOCH)


def honest_node(dealt: Dealt, member: int) -> FeedNode:
    return FeedNode(member, dealt.committee, dealt.shares[member - 1], {FEED.id: FEED}, SETTINGS)


def the_attack(dealt: Dealt) -> tuple[int, list[SignedObservation], dict[int, SignedObservation]]:
    """The round, the minority's two signed observations stamped 2^64 − 1, and every honest member's own."""
    now = now_ms()
    round_ = round_of(now, SETTINGS.interval_ms)
    frozen = [observation(dealt, m, round_, 345_600_000_000, U64_MAX) for m in MALICIOUS]
    honest = {m: observation(dealt, m, round_, 345_650_000_000 + m, now) for m in HONEST}
    return round_, frozen, honest


def test_minority_attack_report_is_never_signed_by_honest_members(dealt: Dealt) -> None:
    round_, frozen, honest = the_attack(dealt)
    # The malicious leader builds its report from exactly t observations, one of them honest.
    used = sorted(frozen + [honest[3]], key=lambda s: s.member)
    report = aggregate([s.observation for s in used], published_at=now_ms())
    assert report.observed_at == U64_MAX  # the median is the minority's timestamp
    proposal = Proposal(0, MALICIOUS[0], report, tuple(used))

    partials = [attest.partial_sign(dealt.shares[m - 1], report.digest(EPOCH)) for m in MALICIOUS]
    for member in HONEST:
        node = honest_node(dealt, member)
        node._member_round(FEED.id, round_).own = honest[member]
        with pytest.raises(RoundRefused) as refused:
            node.sign_proposal(proposal)
        assert refused.value.code == "timestamp_out_of_bounds", refused.value
        assert node.metrics.value("tessera_feed_proposals_refused", feed=FEED.id, code="timestamp_out_of_bounds") == 1
        assert node.metrics.value("tessera_feed_proposals_signed", feed=FEED.id) == 0
    # The minority's own partials are all the leader gets: fewer than t, so no report exists.
    assert len(partials) < dealt.committee.t
    assert not attest.combine(dealt.committee, report.digest(EPOCH), partials).ok


def test_the_only_reason_to_refuse_is_the_timestamp(dealt: Dealt) -> None:
    """The same report with honest timestamps is signed: the time bound is what stops the attack."""
    round_, _, honest = the_attack(dealt)
    now = now_ms()
    fair = [observation(dealt, m, round_, 345_600_000_000, now) for m in MALICIOUS]
    used = sorted(fair + [honest[3]], key=lambda s: s.member)
    report = aggregate([s.observation for s in used], published_at=now)
    node = honest_node(dealt, 3)
    node._member_round(FEED.id, round_).own = honest[3]
    reply = node.sign_proposal(Proposal(0, 1, report, tuple(used)))
    assert attest.verify_partial(dealt.committee, attest.PartialSignature(3, reply.signature), report.digest(EPOCH))


def test_an_honest_leader_refuses_the_observations_and_never_builds_the_report(dealt: Dealt) -> None:
    round_, frozen, honest = the_attack(dealt)
    attempt = next(a for a in range(4) if leader_of(dealt.committee, round_, a) in HONEST)
    leader = honest_node(dealt, leader_of(dealt.committee, round_, attempt))
    for signed in frozen:
        with pytest.raises(RoundMessageError, match="later than this member accepts"):
            leader.accept_observation(ObservationMessage(attempt, signed))
    # Even handed the observations directly, the builder leaves them out: 2 honest < t = 3.
    now = now_ms()
    with pytest.raises(NotEnoughObservationsError) as failed:
        build_report(FEED, dealt.committee, round_, [*frozen, *honest.values()], now,
                     round_start_ms=round_start_ms(round_, SETTINGS.interval_ms))
    assert set(failed.value.rejected) == set(MALICIOUS)
    assert all("later than this member accepts" in why for why in failed.value.rejected.values())


@pytest.mark.parametrize("offset_ms", [-(FEED.sources[0].max_age_s * 1000) - 10_001 - 1000, 15_001, 3_600_000])
def test_timestamps_outside_the_round_window_do_not_count(dealt: Dealt, offset_ms: float) -> None:
    """Early (older than the round's start minus the quotes' max age and the skew) or late (past
    the clock + skew + a source's 5 s) observations are left out; the rest still make a report."""
    now = now_ms()
    round_ = round_of(now, SETTINGS.interval_ms)
    start = round_start_ms(round_, SETTINGS.interval_ms)
    base = start if offset_ms < 0 else now
    odd = observation(dealt, 1, round_, 345_600_000_000, int(base + offset_ms))
    rest = [observation(dealt, m, round_, 345_650_000_000, now) for m in (2, 3, 4)]
    built = build_report(FEED, dealt.committee, round_, [odd, *rest], now, round_start_ms=start)
    assert set(built.rejected) == {1} and built.report.observations == 3
    window = time_window(FEED, now, 10_000, start)
    assert window.earliest <= built.report.observed_at <= window.latest


def test_a_member_refuses_observed_at_the_chains_would_refuse(dealt: Dealt) -> None:
    """observed_at more than MAX_OBSERVED_AFTER_PUBLISHED_MS after published_at: refused, even with a
    clock skew setting so wide that the member's own window would let it through."""
    now = now_ms()
    round_ = round_of(now, SETTINGS.interval_ms)
    ahead = now + MAX_OBSERVED_AFTER_PUBLISHED_MS + 1
    used = [observation(dealt, m, round_, 345_600_000_000, ahead) for m in (1, 2, 3)]
    report = aggregate([s.observation for s in used], published_at=now)
    with pytest.raises(ReportRejected) as refused:
        check_proposal(FEED, dealt.committee, report, used, own=used[0].observation, now_ms=now,
                       max_skew_ms=3_600_000)
    assert refused.value.code == "timestamp_out_of_bounds" and "after published_at" in str(refused.value)


# --- a bad report signed anyway: the Solana program refuses it ----------------------------------------


@pytest.fixture
def chain(dealt: Dealt) -> Chain:
    chain = deployed_chain()
    chain.set_time(now_ms() // 1000)
    chain.ok(init_committee_ix(chain.program_id, chain.payer.pubkey(), domain=DOMAIN, epoch=EPOCH, n=4, t=3,
                               group_key=dealt.committee.group_key))
    return chain


def signed(dealt: Dealt, report: FeedReport) -> SignedReport:
    return SignedReport(report, EPOCH, dealt.sign_digest(report.digest(EPOCH)))


def stored(chain: Chain) -> FeedAccount | None:
    account = chain.svm.get_account(feed_address(chain.program_id, FEED.id)[0])
    return None if account is None or account.owner != chain.program_id else FeedAccount.decode(bytes(account.data))


def test_solana_refuses_the_frozen_report_even_when_the_committee_signed_it(chain: Chain, dealt: Dealt) -> None:
    now = now_ms()
    frozen = FeedReport(FEED.id, 7, 345_600_000_000, 0, 8, 3, observed_at=U64_MAX, published_at=now)
    bad = signed(dealt, frozen)
    assert bad.verify(dealt.committee)  # a valid committee signature: only the time bounds stop it
    chain.fails(ProgramErrorCode.FEED_OBSERVED_AFTER_PUBLISHED, update_feed_ix(chain.program_id, chain.payer.pubkey(), bad))
    both = signed(dealt, dataclasses.replace(frozen, published_at=U64_MAX))
    chain.fails(ProgramErrorCode.FEED_AHEAD_OF_CLOCK, update_feed_ix(chain.program_id, chain.payer.pubkey(), both))
    assert stored(chain) is None
    # The feed still takes honest reports.
    good = signed(dealt, dataclasses.replace(frozen, observed_at=now - 300))
    chain.ok(update_feed_ix(chain.program_id, chain.payer.pubkey(), good))
    assert stored(chain).observed_at == now - 300


def test_solana_time_bounds_at_their_limits(chain: Chain, dealt: Dealt) -> None:
    clock_ms = (now_ms() // 1000) * 1000  # the Clock sysvar has whole seconds
    chain.set_time(clock_ms // 1000)
    latest = clock_ms + MAX_AHEAD_OF_CHAIN_MS

    def push(round_: int, observed_at: int, published_at: int):
        report = FeedReport(FEED.id, round_, 345_600_000_000, 0, 8, 3, observed_at, published_at)
        return update_feed_ix(chain.program_id, chain.payer.pubkey(), signed(dealt, report))

    chain.fails(ProgramErrorCode.FEED_AHEAD_OF_CLOCK, push(1, clock_ms, latest + 1))
    chain.fails(ProgramErrorCode.FEED_OBSERVED_AFTER_PUBLISHED,
                push(1, clock_ms + MAX_OBSERVED_AFTER_PUBLISHED_MS + 1, clock_ms))
    assert isinstance(chain.send(push(1, clock_ms + MAX_OBSERVED_AFTER_PUBLISHED_MS, clock_ms)), TransactionMetadata)
    assert isinstance(chain.send(push(2, latest, latest)), TransactionMetadata)
    # The furthest a stored observed_at can lead the chain is MAX_AHEAD_OF_CHAIN_MS: once the clock
    # passes it, the next honest report goes through.
    chain.fails(ProgramErrorCode.FEED_STALE_ROUND, push(3, clock_ms + 1000, clock_ms + 1000))
    chain.set_time(latest // 1000 + 1)
    chain.ok(push(3, latest + 1000, latest + 1000))
    assert stored(chain).round == 3
