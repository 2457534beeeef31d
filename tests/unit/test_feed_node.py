"""Feed rounds between FeedNodes in one process over real loopback HTTP: each node has its own aiohttp
server on a free port, its own sources (a loopback "exchange" and a recording), and the committee's
endpoints point at those servers. Rounds run on the real clock with a short interval."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest
from aiohttp import web

import attest
from relay.config import parse_config
from relay.feeds.config import FeedRoundSection
from relay.errors import ConfigError
from relay.devstack import free_port
from relay.feeds import FeedConfig, parse_feeds, sign_observation
from relay.feeds.node import FeedNode
from relay.feeds.report import Observation
from relay.feeds.round import ObservationMessage, Proposal, RoundMessageError, RoundRefused, leader_of, round_of
from relay.feeds.signed import SignedReport
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

HONEST = {1: "2000.00", 2: "2000.40", 3: "1999.80", 4: "2000.20"}  # within 5 bps of each other
RECORDED = "2000.10"
# Generous timeouts: the machine running the tests may be busy, and a slow member is not the point here.
SETTINGS = FeedRoundSection(interval_ms=250, collect_ms=20, leader_timeout_ms=150)


@dataclass
class Exchange:
    """GET /{member} answers that member's price; `answers` can be changed by a test."""

    answers: dict[int, str] = field(default_factory=lambda: dict(HONEST))
    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            answer = self.answers[int(request.match_info["member"])]
            if answer == "garbage":
                return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
            return web.json_response({"price": answer})

        app = web.Application()
        app.router.add_get("/{member}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def feed_config(exchange: Exchange, member: int, recording: Path | None, **overrides) -> FeedConfig:
    sources = [{"kind": "http_json", "name": "exchange", "url": f"{exchange.url}/{member}", "price_path": "price",
                "timeout_s": 0.5}]
    if recording is not None:
        sources.append({"kind": "file", "name": "recorded", "path": str(recording), "max_age_s": 3600})
    table = {"decimals": 8, "tolerance_bps": 50, "sources": sources, **overrides}
    return parse_feeds({"feeds": {"ETH/USD": table}})["ETH/USD"]


@dataclass
class Cluster:
    n: int = 4
    t: int = 3
    settings: FeedRoundSection = SETTINGS
    nodes: dict[int, FeedNode] = field(default_factory=dict)
    reports: list[tuple[int, SignedReport]] = field(default_factory=list)  # (publishing member, report)
    _runners: list[web.AppRunner] = field(default_factory=list)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.ports = [free_port() for _ in range(self.n)]
        self.committee, self.shares = attest.deal(
            self.n, self.t, epoch=3, endpoints=[f"http://127.0.0.1:{p}" for p in self.ports], rng=random.Random(7))

    async def start(self, feeds: Callable[[int], FeedConfig], up=None) -> None:
        for member in up or range(1, self.n + 1):
            feed = feeds(member)
            node = FeedNode(member, self.committee, self.shares[member - 1], {feed.id: feed}, self.settings,
                            on_report=lambda signed, m=member: self.reports.append((m, signed)))
            app = web.Application()
            app.add_routes(node.routes())
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.ports[member - 1]).start()
            self._runners.append(runner)
            self.nodes[member] = node
            self._tasks.append(asyncio.create_task(node.run(self._stop)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in self._runners:
            await runner.cleanup()

    async def wait_reports(self, count: int, timeout: float = 10.0) -> list[tuple[int, SignedReport]]:
        deadline = time.monotonic() + timeout
        while len(self.reports) < count:
            assert time.monotonic() < deadline, f"only {len(self.reports)} reports in {timeout} s"
            await asyncio.sleep(0.02)
        return list(self.reports)

    def counter(self, name: str, **labels: str) -> float:
        return sum(node.metrics.value(name, **labels) for node in self.nodes.values())


@pytest.fixture
async def exchange():
    ex = Exchange()
    await ex.start()
    yield ex
    await ex.stop()


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "eth.jsonl"
    path.write_text(json.dumps({"timestamp": 1, "price": RECORDED}) + "\n")
    return path


@pytest.fixture
async def cluster():
    c = Cluster()
    yield c
    await c.stop()


def scaled(price: str) -> int:
    return int(Decimal(price) * 10**8)


async def test_a_report_each_round_that_verifies(cluster: Cluster, exchange: Exchange, recording: Path) -> None:
    await cluster.start(lambda m: feed_config(exchange, m, recording))
    reports = await cluster.wait_reports(4)
    rounds = [signed.round for _, signed in reports]
    assert len(set(rounds)) == len(rounds), "one report per round"
    for publisher, signed in reports:
        assert signed.verify(cluster.committee)
        assert SignedReport.from_json(json.loads(json.dumps(signed.to_json()))) == signed
        assert signed.report.observations >= cluster.t
        # Each member's view is the lower median of its exchange and the recording.
        views = sorted(min(scaled(HONEST[m]), scaled(RECORDED)) for m in HONEST)
        assert views[0] <= signed.report.price <= views[-1]
    assert cluster.counter("tessera_feed_rounds_published", feed="ETH/USD") >= 4
    # Only a leader of its round publishes a report (the first one, or after a failover, a later one:
    # how many rounds fail over depends on the machine's load, so that is not counted here).
    n = len(cluster.committee.members)
    for publisher, s in reports:
        assert publisher in {leader_of(cluster.committee, s.round, k) for k in range(n)}
    assert cluster.counter("tessera_feed_rounds_failed", feed="ETH/USD", reason="not_enough_partials") == 0


async def test_outlier_member_cannot_move_the_median(cluster: Cluster, exchange: Exchange, recording: Path) -> None:
    exchange.answers[4] = "2200.00"  # 10 % off; member 4 reads only this exchange
    await cluster.start(lambda m: feed_config(exchange, m, recording if m != 4 else None))
    reports = await cluster.wait_reports(4)
    honest = [min(scaled(HONEST[m]), scaled(RECORDED)) for m in (1, 2, 3)]
    for _, signed in reports:
        assert signed.verify(cluster.committee)
        assert min(honest) <= signed.report.price <= max(honest)
    # Its observation counts (4 observations) but the median is honest, so member 4 refuses to sign
    # (out_of_tolerance) and the three honest members are the signers.
    assert any(signed.report.observations == 4 for _, signed in reports)
    assert cluster.nodes[4].metrics.value("tessera_feed_proposals_refused", feed="ETH/USD", code="out_of_tolerance") >= 1
    assert cluster.nodes[4].metrics.value("tessera_feed_proposals_signed", feed="ETH/USD") == 0


async def test_garbage_sources_do_not_stop_the_round(cluster: Cluster, exchange: Exchange, recording: Path) -> None:
    exchange.answers[2] = "garbage"  # member 2 still has its recording
    exchange.answers[3] = "garbage"  # member 3 has nothing else: it sits the rounds out
    await cluster.start(lambda m: feed_config(exchange, m, recording if m != 3 else None))
    reports = await cluster.wait_reports(3)
    for _, signed in reports:
        assert signed.verify(cluster.committee)
        assert signed.report.observations == 3  # members 1, 2 (from its recording) and 4
    assert cluster.nodes[3].metrics.value("tessera_feed_rounds_failed", feed="ETH/USD", reason="no_observation") >= 1


async def test_leader_down_next_member_publishes(cluster: Cluster, exchange: Exchange, recording: Path) -> None:
    await cluster.start(lambda m: feed_config(exchange, m, recording), up=(2, 3, 4))  # member 1: no server
    deadline = time.monotonic() + 10
    while not any(leader_of(cluster.committee, s.round, 0) == 1 for _, s in cluster.reports):
        assert time.monotonic() < deadline, "no report for a round member 1 should have led"
        await asyncio.sleep(0.02)
    for publisher, signed in cluster.reports:
        assert signed.verify(cluster.committee) and publisher != 1
    # Member 1's rounds go to the next leader at once (connection refused: no need to wait).
    assert any(publisher == leader_of(cluster.committee, signed.round, 1)
               for publisher, signed in cluster.reports if leader_of(cluster.committee, signed.round, 0) == 1)
    assert cluster.counter("tessera_feed_failovers", feed="ETH/USD") >= 1


async def test_fewer_than_t_members_up_publish_nothing(cluster: Cluster, exchange: Exchange, recording: Path) -> None:
    await cluster.start(lambda m: feed_config(exchange, m, recording), up=(1, 2))
    # The leaders say why (two observations, threshold three) and the members that nobody proposed;
    # once rounds have failed so, none was published.
    await wait_for(lambda: cluster.counter("tessera_feed_rounds_failed", feed="ETH/USD",
                                           reason="not_enough_observations") >= 2
                   and cluster.counter("tessera_feed_rounds_failed", feed="ETH/USD", reason="no_proposal") >= 2,
                   timeout=30, what="two rounds failing for want of observations and of a proposal")
    assert cluster.reports == []
    assert cluster.counter("tessera_feed_rounds_published", feed="ETH/USD") == 0


# --- the member's rules, without the clock ---------------------------------------------------------


def signed_observations(cluster: Cluster, round_: int, prices: dict[int, int]):
    return [
        sign_observation(cluster.shares[m - 1], Observation("ETH/USD", round_, m, 8, price, round_ * SETTINGS.interval_ms), 3)
        for m, price in prices.items()
    ]


async def test_a_member_signs_at_most_one_report_per_round(cluster: Cluster, exchange: Exchange) -> None:
    from relay.feeds import build_report

    feed = feed_config(exchange, 1, None)
    node = FeedNode(1, cluster.committee, cluster.shares[0], {feed.id: feed}, SETTINGS)
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    observations = signed_observations(cluster, round_, {1: 100_000, 2: 100_010, 3: 100_020, 4: 99_990})
    node._member_round(feed.id, round_).own = observations[0]
    now_ms = int(time.time() * 1000)
    first = build_report(feed, cluster.committee, round_, observations, now_ms)
    second = build_report(feed, cluster.committee, round_, observations[:3], now_ms)  # another, valid report
    reply = node.sign_proposal(Proposal(0, 2, first.report, first.observations))
    assert node.sign_proposal(Proposal(0, 2, first.report, first.observations)) == reply  # a retry: same answer
    assert attest.verify_partial(cluster.committee, attest.PartialSignature(1, reply.signature),
                                 first.report.digest(3))
    with pytest.raises(RoundRefused) as refused:
        node.sign_proposal(Proposal(1, 3, second.report, second.observations))
    assert refused.value.code == "already_signed"


async def test_a_forged_proposal_does_not_stop_failover(cluster: Cluster, exchange: Exchange) -> None:
    from dataclasses import replace

    from relay.feeds import build_report

    feed = feed_config(exchange, 1, None)
    node = FeedNode(1, cluster.committee, cluster.shares[0], {feed.id: feed}, SETTINGS)
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    observations = signed_observations(cluster, round_, {1: 100_000, 2: 100_010, 3: 100_020})
    node._member_round(feed.id, round_).own = observations[0]
    built = build_report(feed, cluster.committee, round_, observations, int(time.time() * 1000))
    forged = replace(built.report, price=100_020)
    with pytest.raises(RoundRefused) as refused:
        node.sign_proposal(Proposal(0, 2, forged, built.observations))
    assert refused.value.code == "mismatch"
    # A leader that lies is not a leader that ran the round: the member still moves on.
    assert not node._member_round(feed.id, round_).proposal_seen.is_set()


async def test_observations_go_to_the_leader_only(cluster: Cluster, exchange: Exchange) -> None:
    feed = feed_config(exchange, 1, None)
    nodes = {m: FeedNode(m, cluster.committee, cluster.shares[m - 1], {feed.id: feed}, SETTINGS) for m in (1, 2, 3, 4)}
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    leader = leader_of(cluster.committee, round_, 0)
    other = next(m for m in nodes if m != leader)
    [signed] = signed_observations(cluster, round_, {other: 100_000})
    with pytest.raises(RoundRefused) as refused:
        nodes[other].accept_observation(ObservationMessage(0, signed))
    assert refused.value.code == "not_leader"
    tampered = ObservationMessage(0, type(signed)(signed.observation, bytes(64)))
    with pytest.raises(RoundMessageError, match="does not verify"):
        nodes[leader].accept_observation(tampered)
    old = signed_observations(cluster, round_ - 10_000, {other: 100_000})[0]
    with pytest.raises(RoundRefused) as refused:
        nodes[leader_of(cluster.committee, round_ - 10_000, 0)].accept_observation(ObservationMessage(0, old))
    assert refused.value.code == "stale_round"
    with pytest.raises(RoundMessageError, match="attempt"):
        ObservationMessage.from_json({"attempt": -1, **signed.to_json()})


def test_feed_round_settings_are_checked() -> None:
    base = {"chains": {}}
    config = parse_config({**base, "feed_round": {"interval_ms": 500, "publish_urls": ["http://127.0.0.1:9/v1/reports"]}})
    assert config.feed_round.interval_ms == 500 and config.feed_round.leader_timeout_ms == 250
    with pytest.raises(ConfigError, match="collect_ms .* must be below leader_timeout_ms"):
        parse_config({**base, "feed_round": {"collect_ms": 300, "leader_timeout_ms": 250}})
    with pytest.raises(ConfigError, match="publish_urls"):
        parse_config({**base, "feed_round": {"publish_urls": ["ftp://x"]}})


async def test_bad_requests_get_clear_http_errors(cluster: Cluster, exchange: Exchange, recording: Path) -> None:
    import aiohttp

    await cluster.start(lambda m: feed_config(exchange, m, recording), up=(1,))
    base = cluster.committee.member(1).endpoint
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/v1/feeds/observations", data=b"not json") as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "the body is not JSON"
        async with session.post(f"{base}/v1/feeds/proposals", json={"attempt": 0, "leader": 2, "report": "0x00",
                                                                     "observations": []}) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["code"] == "bad_request" and body["error"].startswith("report:")
        round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
        [signed] = signed_observations(cluster, round_, {2: 100_000})
        unknown = type(signed)(Observation("BTC/USD", round_, 2, 8, 1, 1), signed.signature)
        async with session.post(f"{base}/v1/feeds/observations", json={"attempt": 0, **unknown.to_json()}) as resp:
            assert resp.status == 409 and (await resp.json())["code"] == "unknown_feed"
        async with session.get(f"{base}/v1/feeds/metrics") as resp:
            assert resp.status == 200 and "tessera_feed_rounds_failed_total" in await resp.text()


async def test_a_faulty_partial_is_named_and_the_round_still_completes(
        cluster: Cluster, exchange: Exchange, recording: Path) -> None:
    from relay.feeds.round import PartialReply

    await cluster.start(lambda m: feed_config(exchange, m, recording))
    honest = cluster.nodes[2].sign_proposal

    def broken(proposal):  # member 2 checks the report, then signs the wrong digest
        reply = honest(proposal)
        return PartialReply(2, attest.partial_sign(cluster.shares[1], b"\x00" * 32).signature) if reply else reply

    cluster.nodes[2].sign_proposal = broken
    deadline = time.monotonic() + 10
    # Member 2's partial is only examined when it is among the first t to arrive; wait for that.
    while cluster.counter("tessera_feed_faulty_partials", member="2") < 1:
        assert time.monotonic() < deadline, "member 2's partial was never named faulty"
        await asyncio.sleep(0.05)
    reports = await cluster.wait_reports(3)
    assert all(signed.verify(cluster.committee) for _, signed in reports)


async def test_a_share_that_does_not_match_its_public_share_is_refused_at_start(cluster: Cluster,
                                                                                 exchange: Exchange) -> None:
    from attest.committee import KeyShare

    feed = feed_config(exchange, 1, None)
    wrong = KeyShare(index=1, epoch=cluster.committee.epoch, scalar=cluster.shares[1].scalar)  # member 2's secret
    node = FeedNode(1, cluster.committee, wrong, {feed.id: feed}, SETTINGS)
    with pytest.raises(ConfigError, match="does not match member 1's public share"):
        await node.start()
    await node.close()


async def test_own_observation_is_not_verified_again(cluster: Cluster, exchange: Exchange) -> None:
    """The node's own fresh signature counts as checked (its share was matched at start): the leader
    accepting it, and a member checking a proposal that carries it, do no pairing for it; other
    members' observations are still checked, and a forged one is still refused."""
    feed = feed_config(exchange, 1, None)
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    leader = leader_of(cluster.committee, round_, 0)
    node = FeedNode(leader, cluster.committee, cluster.shares[leader - 1], {feed.id: feed}, SETTINGS)
    await node.start()
    try:
        pairings: list[int] = []
        inner = node.backend._inner
        original = inner.pairing_check

        def counting(pairs):
            pairings.append(len(pairs))
            return original(pairs)

        inner.pairing_check = counting
        # The whole member part of a round: observe, sign, hand to itself as leader (then wait and
        # fail over to the other leaders, which are not running here).
        observing = asyncio.create_task(node.observe_round(feed, round_))
        await wait_for(lambda: (feed.id, round_, 0) in node._leading, timeout=30, what="the node leading its round")
        assert node._leading[(feed.id, round_, 0)].members == 1
        assert pairings == []
        other = next(m for m in (1, 2, 3, 4) if m != leader)
        [theirs] = signed_observations(cluster, round_, {other: 100_010})
        node.accept_observation(ObservationMessage(0, theirs))
        assert pairings == [2]
        third = next(m for m in (1, 2, 3, 4) if m not in (leader, other))
        [forged] = signed_observations(cluster, round_, {third: 100_020})
        forged = type(forged)(forged.observation, theirs.signature)  # a valid signature, of another message
        with pytest.raises(RoundMessageError, match="does not verify"):
            node.accept_observation(ObservationMessage(0, forged))
        assert (await observing).signature == node._member_round(feed.id, round_).own.signature
    finally:
        await node.close()


async def test_a_restarted_member_cannot_sign_a_second_report_for_a_round(cluster: Cluster, exchange: Exchange) -> None:
    """The one-report-per-round promise lives in memory, but a member signs only rounds it observed
    itself, and its clock observes only rounds that start after it started: after a restart, every
    round its previous run could have signed is refused (no_own_view)."""
    from relay.feeds import build_report

    feed = feed_config(exchange, 1, None)
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    observations = signed_observations(cluster, round_, {1: 100_000, 2: 100_010, 3: 100_020, 4: 99_990})
    now_ms = int(time.time() * 1000)
    first = build_report(feed, cluster.committee, round_, observations, now_ms)
    second = build_report(feed, cluster.committee, round_, observations[:3], now_ms)
    before = FeedNode(1, cluster.committee, cluster.shares[0], {feed.id: feed}, SETTINGS)
    before._member_round(feed.id, round_).own = observations[0]
    before.sign_proposal(Proposal(0, 2, first.report, first.observations))

    after = FeedNode(1, cluster.committee, cluster.shares[0], {feed.id: feed}, SETTINGS)  # the restarted process
    stop = asyncio.Event()
    running = asyncio.create_task(after.run(stop))
    try:
        await wait_for(lambda: after._members, timeout=30, what="the restarted member observing a round")
        assert min(key[1] for key in after._members) > round_  # it observed only later rounds
        with pytest.raises(RoundRefused) as refused:
            after.sign_proposal(Proposal(1, 3, second.report, second.observations))
        assert refused.value.code == "no_own_view"
    finally:
        stop.set()
        await running
