"""The Pusher with reports signed through one feed root (v2): the reports of a round that are due go
to a target in ONE update (`push_root`), a feed the chain already holds as new is reported
not-newer without failing the others, and the push rule still applies per feed. In-memory targets
that follow FeedStore.updateFeeds' rule (stale entries skipped, not reverted); the chains
themselves are covered by tests/e2e/test_feed_push_flow.py and the adapters' tests."""

from __future__ import annotations

import random
from typing import Any

import attest
from relay.feeds.aggregate import PushPolicy
from relay.feeds.multi import FeedRoot, SignedFeedRoot
from relay.feeds.push import Pusher
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport
from relay.interfaces import FeedNotNewer
from tests.unit.test_feed_push import FAST, T0, Clock, MemoryTarget

FEEDS = ("BTC/USD", "ETH/USD", "SOL/USD")
POLICY = {f: PushPolicy(deviation_bps=50, heartbeat_s=60) for f in FEEDS}
COMMITTEE, SHARES = attest.deal(4, 3, epoch=1, rng=random.Random(5))


def signed_root(round_: int, prices: dict[str, int]) -> list[SignedReport]:
    """The served reports of a really signed root (t partials combined)."""
    reports = [FeedReport(f, round_, p, 0, 8, 3, T0 + round_ * 1000, T0 + round_ * 1000) for f, p in prices.items()]
    root = FeedRoot.of(reports)
    digest = root.digest(COMMITTEE.epoch)
    partials = [attest.partial_sign(s, digest) for s in SHARES[:3]]
    result = attest.combine(COMMITTEE, digest, partials)
    assert result.ok
    return SignedFeedRoot(root, COMMITTEE.epoch, result.signature).reports()


class RootTarget(MemoryTarget):
    """Holds feeds like a FeedStore: push_root applies the newer reports in one 'transaction' and
    skips the others (as updateFeeds does), after checking the one signature."""

    def __init__(self, name: str = "root", fail: int = 0) -> None:
        super().__init__(name, fail=fail)
        self.root_calls: list[list[str]] = []
        self.txs = 0

    async def push_root(self, reports: list[SignedReport]) -> dict[str, Any]:
        self.root_calls.append([r.feed_id for r in reports])
        if self.fail:
            self.fail -= 1
            raise ConnectionError("node down")
        assert len({r.root_key for r in reports}) == 1 and all(r.verify(COMMITTEE) for r in reports)
        self.txs += 1
        out: dict[str, Any] = {}
        for r in reports:
            current = self.stored.get(r.feed_id)
            if current is not None and current.round >= r.round:
                out[r.feed_id] = FeedNotNewer(self.name, r.feed_id, r.round, current.round)
            else:
                self.stored[r.feed_id] = r.report
                out[r.feed_id] = f"tx-{self.txs}"
        return out


async def test_a_round_goes_on_chain_in_one_update() -> None:
    target = RootTarget()
    async with Pusher([target], POLICY, committee=COMMITTEE, clock=Clock(T0)) as pusher:
        for s in signed_root(1, {"BTC/USD": 9_000_000, "ETH/USD": 200_000, "SOL/USD": 15_000}):
            pusher.submit(s)
        await pusher.drain(5)
    assert target.root_calls == [list(FEEDS)] and target.txs == 1
    assert target.calls == []  # no single-report pushes
    assert {(o.feed_id, o.pushed, o.tx) for o in pusher.history} == {(f, True, "tx-1") for f in FEEDS}


async def test_a_stale_feed_does_not_fail_the_others() -> None:
    target = RootTarget()
    async with Pusher([target], POLICY, clock=Clock(T0)) as pusher:
        # Another pusher puts ETH/USD round 2 on the chain after this one read the chain's state.
        target.stored["ETH/USD"] = signed_root(2, {"ETH/USD": 210_000})[0].report
        for s in signed_root(1, {"BTC/USD": 9_000_000, "ETH/USD": 200_000, "SOL/USD": 15_000}):
            pusher.submit(s)
        await pusher.drain(5)
        assert pusher.last_pushed("root", "ETH/USD").round == 2  # learnt from the chain
    assert target.txs == 1
    outcome = {o.feed_id: o for o in pusher.history}
    assert outcome["BTC/USD"].pushed and outcome["SOL/USD"].pushed
    assert not outcome["ETH/USD"].pushed and "not newer" in outcome["ETH/USD"].reason
    assert target.stored["ETH/USD"].round == 2 and target.stored["BTC/USD"].round == 1


async def test_only_feeds_the_push_rule_wants_are_in_the_update() -> None:
    target, clock = RootTarget(), Clock(T0)
    async with Pusher([target], POLICY, clock=clock) as pusher:
        for s in signed_root(1, {"BTC/USD": 9_000_000, "ETH/USD": 200_000, "SOL/USD": 15_000}):
            pusher.submit(s)
        await pusher.drain(5)
        clock.ms = T0 + 1000
        # Round 2: only BTC moved past the 50 bps deviation; ETH and SOL stay within it.
        for s in signed_root(2, {"BTC/USD": 9_100_000, "ETH/USD": 200_010, "SOL/USD": 15_001}):
            pusher.submit(s)
        await pusher.drain(5)
        clock.ms = T0 + 2000
        for s in signed_root(3, {"BTC/USD": 9_200_000, "ETH/USD": 210_000, "SOL/USD": 15_001}):
            pusher.submit(s)
        await pusher.drain(5)
    # One feed alone goes through push_root too: a v2 signature is over the root, not the report.
    assert target.root_calls == [list(FEEDS), ["BTC/USD"], ["BTC/USD", "ETH/USD"]]
    assert target.calls == []


async def test_a_failed_root_update_is_retried_whole() -> None:
    target = RootTarget(fail=1)
    async with Pusher([target], POLICY, backoff=FAST, clock=Clock(T0)) as pusher:
        for s in signed_root(1, {"BTC/USD": 9_000_000, "ETH/USD": 200_000}):
            pusher.submit(s)
        await pusher.drain(5)
    assert target.root_calls == [["BTC/USD", "ETH/USD"]] * 2 and target.txs == 1
    assert all(o.pushed and o.attempts == 2 for o in pusher.history)


async def test_v1_reports_and_targets_without_push_root_keep_single_pushes() -> None:
    plain, rooted = MemoryTarget("plain"), RootTarget()
    v1 = SignedReport(FeedReport("ETH/USD", 1, 200_000, 0, 8, 3, T0, T0), 1, b"\x01" * 64)
    async with Pusher([plain, rooted], POLICY, clock=Clock(T0)) as pusher:
        pusher.submit(v1)
        await pusher.drain(5)
    assert plain.calls == [1] and rooted.calls == [1] and rooted.root_calls == []


async def test_reports_of_a_root_arriving_apart_still_go_in_one_update() -> None:
    import asyncio

    target = RootTarget()
    async with Pusher([target], POLICY, clock=Clock(T0), root_wait_s=2.0) as pusher:
        first, second, third = signed_root(1, {"BTC/USD": 9_000_000, "ETH/USD": 200_000, "SOL/USD": 15_000})
        pusher.submit(first)
        await asyncio.sleep(0.1)  # the stream delivers the root's reports one by one
        pusher.submit(second)
        await asyncio.sleep(0.1)
        assert target.root_calls == []  # still waiting for the third
        pusher.submit(third)
        await pusher.drain(5)
    assert target.root_calls == [list(FEEDS)] and target.txs == 1


async def test_a_root_only_partly_followed_is_pushed_after_the_wait() -> None:
    import time

    target = RootTarget()
    policy = {f: POLICY[f] for f in ("BTC/USD", "ETH/USD")}  # this pusher does not push SOL/USD
    async with Pusher([target], policy, clock=Clock(T0), root_wait_s=0.3) as pusher:
        started = time.monotonic()
        for s in signed_root(1, {"BTC/USD": 9_000_000, "ETH/USD": 200_000, "SOL/USD": 15_000}):
            pusher.submit(s)  # SOL/USD is skipped (no policy): 2 of the root's 3 reports wait
        await pusher.drain(5)
        waited = time.monotonic() - started
    assert target.root_calls == [["BTC/USD", "ETH/USD"]] and waited >= 0.3


class RidingTarget(RootTarget):
    """Takes `riders` like SolanaFeedTarget: sends them only when they complete the root."""

    def __init__(self) -> None:
        super().__init__("riding")
        self.riders: list[list[str]] = []

    async def push_root(self, reports: list[SignedReport], riders: list[SignedReport] = ()) -> dict[str, Any]:
        self.riders.append([r.feed_id for r in riders])
        whole = [*reports, *riders]
        complete = len(whole) == whole[0].root.leaf_count
        return await super().push_root(whole if complete else reports)


async def test_feeds_not_due_ride_along_when_they_complete_the_root() -> None:
    target, clock = RidingTarget(), Clock(T0)
    async with Pusher([target], POLICY, clock=clock) as pusher:
        for s in signed_root(1, {"BTC/USD": 9_000_000, "ETH/USD": 200_000, "SOL/USD": 15_000}):
            pusher.submit(s)
        await pusher.drain(5)
        clock.ms = T0 + 1000
        # Only BTC/USD is due; ETH/USD and SOL/USD are newer than the chain but within deviation.
        for s in signed_root(2, {"BTC/USD": 9_100_000, "ETH/USD": 200_010, "SOL/USD": 15_001}):
            pusher.submit(s)
        await pusher.drain(5)
        assert all(pusher.last_pushed("riding", f).round == 2 for f in FEEDS)
    assert target.root_calls[-1] == list(FEEDS) and target.riders[-1] == ["ETH/USD", "SOL/USD"]
    last = {o.feed_id: o for o in pusher.history if o.round == 2}
    assert last["BTC/USD"].pushed and "moved" in last["BTC/USD"].reason
    assert last["ETH/USD"].pushed and "sent with its root" in last["ETH/USD"].reason
    assert target.txs == 2
