"""One committee signature per round over every feed's report ([feed_round] sign = "root";
docs/FEEDS.md "One signature per round"): the leader's root proposal, a member's checks (it signs a
root only if it would sign each report alone) and whole rounds between FeedNodes over loopback
HTTP, as tests/unit/test_feed_node.py does for one feed."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

import attest
from relay.feeds import build_report, parse_feeds, sign_observation
from relay.feeds.config import FeedRoundSection
from relay.feeds.multi import FeedRoot
from relay.feeds.node import FeedNode
from relay.feeds.report import Observation
from relay.feeds.round import Proposal, RootProposal, RoundMessageError, RoundRefused, round_of
from relay.feeds.signed import SignedReport
from tests.unit.test_feed_node import HONEST, RECORDED, SETTINGS, Cluster, Exchange

pytestmark = pytest.mark.timeout(60)

FEEDS = ("BTC/USD", "ETH/USD")


def feeds_config(exchange: Exchange, member: int, recording: Path | None, ids=FEEDS) -> dict:
    tables = {}
    for feed_id in ids:
        sources = [{"kind": "http_json", "name": "exchange", "url": f"{exchange.url}/{member}",
                    "price_path": "price", "timeout_s": 0.5}]
        if recording is not None:
            sources.append({"kind": "file", "name": "recorded", "path": str(recording), "max_age_s": 3600})
        tables[feed_id] = {"decimals": 8, "tolerance_bps": 50, "sources": sources}
    return parse_feeds({"feeds": tables})


class MultiCluster(Cluster):
    async def start(self, feeds, up=None) -> None:  # feeds(member) -> {id: FeedConfig}
        for member in up or range(1, self.n + 1):
            node = FeedNode(member, self.committee, self.shares[member - 1], feeds(member), self.settings,
                            on_report=lambda signed, m=member: self.reports.append((m, signed)))
            app = web.Application()
            app.add_routes(node.routes())
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.ports[member - 1]).start()
            self._runners.append(runner)
            self.nodes[member] = node
            self._tasks.append(asyncio.create_task(node.run(self._stop)))


@pytest.fixture
async def exchange():
    ex = Exchange()
    await ex.start()
    yield ex
    await ex.stop()


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "prices.jsonl"
    path.write_text(json.dumps({"timestamp": 1, "price": RECORDED}) + "\n")
    return path


def observations(cluster: Cluster, feed_id: str, round_: int, prices: dict[int, int]):
    return [sign_observation(cluster.shares[m - 1],
                             Observation(feed_id, round_, m, 8, price, round_ * SETTINGS.interval_ms), 3)
            for m, price in prices.items()]


def proposals_for(cluster: Cluster, node: FeedNode, round_: int, feed_ids=FEEDS, leader: int = 2) -> list[Proposal]:
    """Honest proposals for each feed (member 1 observed each round itself)."""
    out = []
    for feed_id in feed_ids:
        obs = observations(cluster, feed_id, round_, {1: 100_000, 2: 100_010, 3: 100_020, 4: 99_990})
        if feed_id in node.feeds:
            node._member_round(feed_id, round_).own = obs[0]
        feed = node.feeds.get(feed_id) or next(iter(node.feeds.values()))
        built = build_report(feed.model_copy(update={"id": feed_id}), cluster.committee, round_, obs, int(time.time() * 1000))
        out.append(Proposal(0, leader, built.report, built.observations))
    return out


@pytest.fixture
def cluster():
    return Cluster()


def member(cluster: Cluster, exchange: Exchange, ids=FEEDS) -> FeedNode:
    return FeedNode(1, cluster.committee, cluster.shares[0], feeds_config(exchange, 1, None, ids), SETTINGS)


async def test_a_member_signs_one_root_for_all_reports_and_nothing_else_for_them(cluster, exchange) -> None:
    node = member(cluster, exchange)
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    proposal = RootProposal.of(proposals_for(cluster, node, round_))
    reply = node.sign_root_proposal(proposal)
    root = FeedRoot.of([p.report for p in proposal.proposals])
    assert [r.feed_id for r in root.reports] == sorted(FEEDS)  # leaf order: feed id
    assert attest.verify_partial(cluster.committee, attest.PartialSignature(1, reply.signature), root.digest(3))
    assert node.sign_root_proposal(proposal) == reply  # a retry: the same answer
    # Signing the root counts as signing each report: no single-report signature for that round.
    for single in proposal.proposals:
        with pytest.raises(RoundRefused) as refused:
            node.sign_proposal(single)
        assert refused.value.code == "already_signed"
    # Nor another root holding one of them.
    with pytest.raises(RoundRefused) as refused:
        node.sign_root_proposal(RootProposal.of(list(proposal.proposals[:1])))
    assert refused.value.code == "already_signed"
    # The wire form round-trips and is checked.
    assert RootProposal.from_json(json.loads(json.dumps(proposal.to_json()))) == proposal
    body = proposal.to_json()
    body["proposals"].reverse()
    with pytest.raises(RoundMessageError, match="feed id order"):
        RootProposal.from_json(body)


@pytest.mark.parametrize("attack", ["price", "observed_at_future", "unserved_feed"])
async def test_a_root_with_one_bad_report_is_refused_whole(cluster, exchange, attack: str) -> None:
    """The attack: a leader hides a report the member would refuse alone inside a root of good ones."""
    node = member(cluster, exchange)
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    good, bad = proposals_for(cluster, node, round_)
    if attack == "price":
        bad = replace(bad, report=replace(bad.report, price=bad.report.price * 2))
    elif attack == "observed_at_future":
        bad = replace(bad, report=replace(bad.report, observed_at=int(time.time() * 1000) + 3_600_000))
    else:  # a feed this member does not serve
        [bad] = proposals_for(cluster, node, round_, ("SOL/USD",))
    with pytest.raises(RoundRefused) as refused:
        node.sign_root_proposal(RootProposal.of([good, bad]))
    assert bad.report.feed_id in str(refused.value) and "whole root is refused" in str(refused.value)
    if attack == "unserved_feed":
        assert refused.value.code == "unknown_feed"
    # Alone, the same bad report is refused too (the root applies the same checks) ...
    if attack != "unserved_feed":
        with pytest.raises(RoundRefused):
            node.sign_proposal(bad)
    # ... and nothing was signed for the good feed: it can still be signed alone.
    assert node._member_round(good.report.feed_id, round_).signed is None
    reply = node.sign_proposal(good)
    assert attest.verify_partial(cluster.committee, attest.PartialSignature(1, reply.signature),
                                 good.report.digest(3))


ROOT = FeedRoundSection(interval_ms=250, collect_ms=20, leader_timeout_ms=150, sign="root")


async def test_rounds_of_two_feeds_publish_one_signature_per_round(exchange, recording) -> None:
    cluster = MultiCluster(settings=ROOT)
    try:
        await cluster.start(lambda m: feeds_config(exchange, m, recording))
        reports = await cluster.wait_reports(8, timeout=20)
        by_round: dict[int, list[SignedReport]] = {}
        for _, signed in reports:
            by_round.setdefault(signed.round, []).append(signed)
            assert signed.verify(cluster.committee)
            again = SignedReport.from_json(json.loads(json.dumps(signed.to_json())))
            assert again == signed and again.verify(cluster.committee)
        complete = {r: items for r, items in by_round.items() if len(items) == 2}
        assert complete, f"no round published both feeds: {by_round}"
        rooted = [items for items in complete.values() if all(s.root is not None for s in items)]
        assert rooted, "no round was signed as a root"
        for items in rooted:
            assert {s.feed_id for s in items} == set(FEEDS)
            assert len({s.signature for s in items}) == 1  # one committee signature for the round
            assert len({s.root_hash for s in items}) == 1
            assert all(s.version == 2 and s.root.leaf_count == 2 for s in items)
        assert cluster.counter("tessera_feed_roots", outcome="signed") >= len(rooted)
        views = sorted(min(int(float(HONEST[m]) * 10**8), int(float(RECORDED) * 10**8)) for m in HONEST)
        assert all(views[0] <= s.report.price <= views[-1] for _, s in reports)
    finally:
        await cluster.stop()


async def test_sign_report_keeps_one_signature_per_report(exchange, recording) -> None:
    cluster = MultiCluster(settings=FeedRoundSection(interval_ms=250, collect_ms=20, leader_timeout_ms=150,
                                                     sign="report"))
    try:
        await cluster.start(lambda m: feeds_config(exchange, m, recording))
        reports = await cluster.wait_reports(4, timeout=20)
        for _, signed in reports:
            assert signed.root is None and signed.version == 1
            assert signed.verify(cluster.committee)
    finally:
        await cluster.stop()


def test_sign_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="sign"):
        FeedRoundSection(sign="merkle")
    assert FeedRoundSection().sign == "root"


async def test_the_leader_falls_back_to_one_signature_per_report_when_the_root_is_not_signed(cluster, exchange) -> None:
    """_run_root with the network part replaced: a root signed -> v2 reports for every feed; a root
    refused -> each report asked alone (one bad feed does not hold the others back); a batch of
    one -> a v1 report, no root."""
    from relay.feeds.multi import SignedFeedRoot
    from relay.feeds.round import RootBatch

    node = FeedNode(2, cluster.committee, cluster.shares[1], feeds_config(exchange, 2, None), SETTINGS)
    round_ = round_of(int(time.time() * 1000), SETTINGS.interval_ms)
    asked_alone: list[str] = []

    async def alone(feed, proposal):
        asked_alone.append(proposal.report.feed_id)
        digest = proposal.report.digest(3)
        return SignedReport(proposal.report, 3, attest.combine_signatures(
            [attest.partial_sign(s, digest) for s in cluster.shares[:3]]))

    async def root_signed(root_proposal):
        root = root_proposal.feed_root()
        digest = root.digest(3)
        return SignedFeedRoot(root, 3, attest.combine_signatures([attest.partial_sign(s, digest)
                                                                  for s in cluster.shares[:3]]))

    async def root_refused(root_proposal):
        return None

    node._gather_partials = alone
    for gather, expect_version in ((root_signed, 2), (root_refused, 1)):
        node._gather_root_partials = gather
        asked_alone.clear()
        batch = RootBatch()
        for feed_id in FEEDS:
            batch.start(feed_id)
        futures = [batch.add(p) for p in proposals_for(cluster, node, round_)]
        await node._run_root((round_, 0), batch)
        got = [f.result() for f in futures]
        assert all(s is not None and s.version == expect_version and s.verify(cluster.committee) for s in got)
        assert asked_alone == ([] if expect_version == 2 else sorted(FEEDS))
    assert node.metrics.value("tessera_feed_roots", outcome="signed") == 1
    assert node.metrics.value("tessera_feed_roots", outcome="refused") == 1
    node._gather_root_partials = root_signed
    asked_alone.clear()
    batch = RootBatch()
    batch.start("ETH/USD")
    [future] = [batch.add(proposals_for(cluster, node, round_, ("ETH/USD",))[0])]
    await node._run_root((round_, 1), batch)
    assert future.result().version == 1 and asked_alone == ["ETH/USD"]
