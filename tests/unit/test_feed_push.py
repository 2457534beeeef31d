"""The Pusher's decisions, retries and queueing with in-memory targets (the chain side is covered by
tests/e2e/test_evm_feeds.py), and the [feed_push] section."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.backoff import Backoff
from relay.config import parse_config
from relay.errors import ConfigError
from relay.feeds.aggregate import PushPolicy
from relay.interfaces import FeedNotNewer
from relay.feeds.push import Pusher, PushError, _parse_event
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport

T0 = 1_795_431_720_000
FAST = Backoff(base=0.01, cap=0.02, max_attempts=3, jitter=0)


def signed(round_: int, price: int, feed: str = "ETH/USD", published: int | None = None) -> SignedReport:
    report = FeedReport(feed, round_, price, 0, 8, 3, T0 + round_ * 1000,
                        published if published is not None else T0 + round_ * 1000)
    return SignedReport(report, 1, b"\x01" * 64)


class MemoryTarget:
    def __init__(self, name: str = "mem", fail: int = 0, retryable: bool = True, gate: asyncio.Event | None = None):
        self.name, self.fail, self.retryable, self.gate = name, fail, retryable, gate
        self.stored: dict[str, FeedReport] = {}
        self.calls: list[int] = []

    async def latest(self, feed_id: str) -> Any:
        return self.stored.get(feed_id)

    async def push(self, s: SignedReport) -> Any:
        self.calls.append(s.round)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            exc = ConnectionError("down")
            exc.retryable = self.retryable  # type: ignore[attr-defined]
            raise exc
        current = self.stored.get(s.feed_id)
        if current is not None and current.round >= s.round:
            return FeedNotNewer(self.name, s.feed_id, s.round, current.round)
        self.stored[s.feed_id] = s.report
        return f"tx-{s.round}"


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


POLICY = {"ETH/USD": PushPolicy(deviation_bps=50, heartbeat_s=60)}


async def test_deviation_heartbeat_and_old_rounds() -> None:
    target, clock = MemoryTarget(), Clock(T0)
    async with Pusher([target], POLICY, clock=clock) as pusher:
        for report, now in [(signed(1, 1000_0000), T0), (signed(2, 1004_0000), T0 + 1000),
                            (signed(3, 1006_0000), T0 + 2000), (signed(4, 1006_0000), T0 + 3000 + 60_000),
                            (signed(2, 1, published=T0), T0 + 70_000)]:
            clock.ms = now
            pusher.submit(report)
            await pusher.drain(5)
    assert [(o.round, o.pushed) for o in pusher.history] == [(1, True), (2, False), (3, True), (4, True), (2, False)]
    assert target.calls == [1, 3, 4]


async def test_restart_reads_the_chain_state() -> None:
    target = MemoryTarget()
    target.stored["ETH/USD"] = signed(5, 1000_0000).report
    async with Pusher([target], POLICY, clock=Clock(T0 + 6000)) as pusher:
        assert pusher.last_pushed("mem", "ETH/USD").round == 5
        pusher.submit(signed(6, 1001_0000))
        await pusher.drain(5)
    assert target.calls == []


async def test_only_the_newest_waiting_report_is_pushed() -> None:
    gate = asyncio.Event()
    target = MemoryTarget(gate=gate)
    async with Pusher([target], POLICY, clock=Clock(T0)) as pusher:
        pusher.submit(signed(1, 1000_0000))
        await asyncio.sleep(0.01)  # round 1 is being pushed (held at the gate)
        for r in (2, 3, 4):
            pusher.submit(signed(r, 2000_0000 * r))
        gate.set()
        await pusher.drain(5)
    assert target.calls == [1, 4]


async def test_retries_then_gives_up_and_never_retries_refusals() -> None:
    flaky = MemoryTarget("flaky", fail=2)
    async with Pusher([flaky], POLICY, backoff=FAST, clock=Clock(T0)) as pusher:
        pusher.submit(signed(1, 1000_0000))
        await pusher.drain(5)
    assert pusher.history[-1].pushed and pusher.history[-1].attempts == 3

    down = MemoryTarget("down", fail=10)
    async with Pusher([down], POLICY, backoff=FAST, clock=Clock(T0)) as pusher:
        pusher.submit(signed(1, 1000_0000))
        await pusher.drain(5)
    assert not pusher.history[-1].pushed and pusher.history[-1].reason.startswith("gave up") and len(down.calls) == 3

    refusing = MemoryTarget("refusing", fail=10, retryable=False)
    async with Pusher([refusing], POLICY, backoff=FAST, clock=Clock(T0)) as pusher:
        pusher.submit(signed(1, 1000_0000))
        await pusher.drain(5)
    assert pusher.history[-1].reason.startswith("refused") and refusing.calls == [1]


async def test_a_failing_target_does_not_hold_back_another() -> None:
    gate = asyncio.Event()
    stuck, fine = MemoryTarget("stuck", gate=gate), MemoryTarget("fine")
    async with Pusher([stuck, fine], POLICY, clock=Clock(T0)) as pusher:
        pusher.submit(signed(1, 1000_0000))
        for _ in range(100):
            if "ETH/USD" in fine.stored:
                break
            await asyncio.sleep(0.01)
        assert fine.stored["ETH/USD"].round == 1 and "ETH/USD" not in stuck.stored
        gate.set()
        await pusher.drain(5)
    assert stuck.stored["ETH/USD"].round == 1


async def test_not_newer_refreshes_the_view() -> None:
    target = MemoryTarget()
    async with Pusher([target], POLICY, clock=Clock(T0)) as pusher:
        target.stored["ETH/USD"] = signed(9, 1000_0000).report  # someone else pushed round 9 meanwhile
        pusher.submit(signed(3, 1000_0000))
        await pusher.drain(5)
        assert not pusher.history[-1].pushed and "not newer" in pusher.history[-1].reason
        assert pusher.last_pushed("mem", "ETH/USD").round == 9


async def test_unknown_feed_and_bad_setup() -> None:
    target = MemoryTarget()
    async with Pusher([target], POLICY, clock=Clock(T0)) as pusher:
        pusher.submit(signed(1, 5, feed="XAU/USD"))
        await pusher.drain(5)
    assert target.calls == [] and pusher.history == []
    with pytest.raises(PushError, match="no push targets"):
        Pusher([], POLICY)
    with pytest.raises(PushError, match="no feeds"):
        Pusher([target], {})


def test_stream_events() -> None:
    s = signed(1, 1000_0000)
    import json

    assert _parse_event(json.dumps(s.to_json())) == s
    assert _parse_event(json.dumps({"type": "report", "signed": s.to_json()})) == s
    assert _parse_event("not json") is None
    assert _parse_event(json.dumps({"hello": 1})) is None
    assert _parse_event(json.dumps({**s.to_json(), "price": "1"})) is None  # readable field disagrees


def test_feed_push_section() -> None:
    base = {"chains": {"evm": {"kind": "evm", "domain": 1, "chain_id": 1, "rpc_urls": ["http://127.0.0.1:8545"]}}}
    config = parse_config({**base, "feed_push": {"source": "http://127.0.0.1:7400", "targets": ["evm"],
                                                  "evm_key": {"file": "keys/pusher.key"}}})
    assert config.feed_push.targets == ["evm"] and config.feed_push.verify
    with pytest.raises(ConfigError, match="feed_push.source"):
        parse_config({**base, "feed_push": {"source": "ftp://x"}})
    with pytest.raises(ConfigError, match="feed_push"):
        parse_config({**base, "feed_push": {"evm_key": {"file": "a", "env": "B"}}})
