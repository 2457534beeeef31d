"""Feed fan-out through NATS JetStream, against the session's real nats-server (tests/support/nats.py)
and feed servers in process: the stream fills a new server's history, forged and malformed messages
are refused by every server, a round is kept once, reports already held are passed over before the
signature check, a round leader's reports reach the stream, and the SDK moves to another server
when its server goes away, without gaps or duplicates."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import nats
import pytest

from relay.config import FeedServerSection
from relay.errors import ConfigError
from relay.feeds.client import FeedsClient, GapEvent
from relay.feeds.config import FeedRoundSection
from relay.feeds.jetstream import PublishError, ReportPublisher, StreamSettings, report_subject
from relay.feeds.node import FeedNode
from relay.feeds.server.consumer import StreamConsumer
from relay.feeds.signed import SignedReport
from tests.support.committee import deal
from tests.support.feeds import FEEDS, RunningServer, make_server
from tests.support.nats import NatsServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


async def publisher(stream) -> ReportPublisher:
    pub = ReportPublisher(stream)
    await pub.wait_ready(10)
    return pub


async def fed_server(dealt, stream, **settings):
    server = make_server(dealt, stale_after_s=60, **settings)
    server.stream = StreamConsumer(server.hub, stream)
    await server.stream.start()
    return server


def rounds(server, feed="ETH/USD") -> list[int]:
    return [e.report.round for e in server.feeds[feed].history]


async def test_a_new_server_fills_its_history_from_the_stream(nats_server, dealt):
    stream = nats_server.stream_settings()
    pub = await publisher(stream)
    try:
        for r in range(1, 21):
            await pub.publish(dealt.sign("ETH/USD", r))
        await pub.publish(dealt.sign("BTC/USD", 1))
        server = await fed_server(dealt, stream)
        try:
            await asyncio.wait_for(server.stream.caught_up.wait(), 10)
            assert rounds(server) == list(range(1, 21)) and rounds(server, "BTC/USD") == [1]
            status = server.stream.status()
            assert status["caught_up"] and status["stream_seq"] == 21 and status["pending"] == 0
            # A replayed report keeps the time the stream stored it, not the time it was replayed.
            first = server.feeds["ETH/USD"].history[0]
            assert first.received_ms <= server.feeds["ETH/USD"].history[-1].received_ms
            # Live from then on.
            await pub.publish(dealt.sign("ETH/USD", 21))
            await wait_for(lambda: rounds(server)[-1] == 21, timeout=5)
        finally:
            await server.stream.close()
    finally:
        await pub.close()


async def test_an_empty_stream_is_caught_up_at_once(nats_server, dealt):
    server = await fed_server(dealt, nats_server.stream_settings())
    try:
        assert server.stream.caught_up.is_set() and server.stream.status()["stream_seq"] == 0
    finally:
        await server.stream.close()


async def test_forged_and_malformed_messages_on_the_stream_are_refused(nats_server, dealt):
    stream = nats_server.stream_settings()
    server = await fed_server(dealt, stream)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    subject = report_subject(stream.subject, "ETH/USD")
    try:
        forged = deal(epoch=dealt.committee.epoch).sign("ETH/USD", 5)  # same epoch, another committee's key
        await js.publish(subject, json.dumps(forged.to_json()).encode(), headers={"Nats-Msg-Id": "forged"})
        await js.publish(subject, b"\xff not json", headers={"Nats-Msg-Id": "garbage"})
        await js.publish(subject, b'{"report": 1}', headers={"Nats-Msg-Id": "malformed"})
        genuine = dealt.sign("ETH/USD", 5)
        await js.publish(subject, json.dumps(genuine.to_json()).encode(), headers={"Nats-Msg-Id": "ETH/USD:5"})
        other = dealt.sign("SOL/USD", 1)  # a feed the stream carries and this server does not serve
        await js.publish(report_subject(stream.subject, "SOL/USD"), json.dumps(other.to_json()).encode())
        await wait_for(lambda: rounds(server) == [5], timeout=5)
        assert server.feeds["ETH/USD"].latest.report == genuine
        await wait_for(lambda: server.hub.metrics.reports.labels("not_served")._value.get() == 1, timeout=5)
        assert server.hub.metrics.reports.labels("rejected")._value.get() == 3
    finally:
        await nc.close()
        await server.stream.close()


async def test_a_round_is_kept_once_and_the_same_on_every_server(nats_server, dealt):
    stream = nats_server.stream_settings()
    pub = await publisher(stream)
    servers = [await fed_server(dealt, stream) for _ in range(2)]
    try:
        first, second = dealt.sign("ETH/USD", 1, price=100), dealt.sign("ETH/USD", 1, price=200)
        seq = await pub.publish(first)
        assert await pub.publish(second) == seq  # another leader's report of the same round: not stored
        await pub.publish(dealt.sign("ETH/USD", 2))
        for server in servers:
            await wait_for(lambda: rounds(server) == [1, 2], timeout=5)
            assert server.feeds["ETH/USD"].history[0].report == first
    finally:
        for server in servers:
            await server.stream.close()
        await pub.close()


async def test_reports_already_held_are_passed_over_before_the_signature(nats_server, dealt, tmp_path, monkeypatch):
    stream = nats_server.stream_settings()
    pub = await publisher(stream)
    try:
        for r in range(1, 6):
            await pub.publish(dealt.sign("ETH/USD", r))
        server = await fed_server(dealt, stream, db=tmp_path / "feeds.db")
        await asyncio.wait_for(server.stream.caught_up.wait(), 10)
        await server.stream.close()
        server.hub.db.close()
        checked = []
        original = SignedReport.verify
        monkeypatch.setattr(SignedReport, "verify", lambda self, c: checked.append(self.round) or original(self, c))
        again = await fed_server(dealt, stream, db=tmp_path / "feeds.db")  # history 1..5 from SQLite
        try:
            await asyncio.wait_for(again.stream.caught_up.wait(), 10)
            await pub.publish(dealt.sign("ETH/USD", 6))
            await wait_for(lambda: rounds(again) == [1, 2, 3, 4, 5, 6], timeout=5)
            assert checked == [6]
        finally:
            await again.stream.close()
            again.hub.db.close()
    finally:
        await pub.close()


async def test_a_round_leader_publishes_to_the_stream(nats_server, dealt):
    stream = nats_server.stream_settings()
    settings = FeedRoundSection(nats_urls=list(stream.urls), nats_stream=stream.stream, nats_subject=stream.subject)
    node = FeedNode(1, dealt.committee, dealt.shares[0], FEEDS, settings)
    server = await fed_server(dealt, stream)
    try:
        assert node._stream is not None
        await node._stream.wait_ready(10)
        node._publish(dealt.sign("ETH/USD", 7))
        await wait_for(lambda: rounds(server) == [7], timeout=5)
        assert node.metrics.value("tessera_feed_publish_errors", url="nats") == 0
    finally:
        await node.close()
        await server.stream.close()


async def test_a_leader_without_nats_counts_the_failure_and_goes_on(dealt):
    settings = FeedRoundSection(nats_urls=["nats://127.0.0.1:1"])  # nothing listens there
    node = FeedNode(1, dealt.committee, dealt.shares[0], FEEDS, settings)
    try:
        node._stream.start()
        node._publish(dealt.sign("ETH/USD", 1))
        await wait_for(lambda: node.metrics.value("tessera_feed_publish_errors", url="nats") == 1, timeout=5)
    finally:
        await node.close()


async def test_the_sdk_fails_over_to_another_server_without_gaps_or_duplicates(nats_server, dealt):
    stream = nats_server.stream_settings()
    pub = await publisher(stream)
    servers = [await fed_server(dealt, stream) for _ in range(2)]
    running = [await RunningServer(s).start() for s in servers]
    items: list = []
    try:
        async with FeedsClient([r.url for r in running], dealt.committee, reconnect_base_s=0.05,
                               reconnect_cap_s=0.2) as client:

            async def collect():
                async for item in client.stream(["ETH/USD"], since={"ETH/USD": 0}):
                    items.append(item)

            reader = asyncio.create_task(collect())
            for r in range(1, 6):
                await pub.publish(dealt.sign("ETH/USD", r))
            await wait_for(lambda: len(items) == 5, timeout=10)
            assert servers[0].hub.subscriber_count == 1 and servers[1].hub.subscriber_count == 0
            await running[0].stop()  # the client's server goes away
            for r in range(6, 16):
                await pub.publish(dealt.sign("ETH/USD", r))
            await wait_for(lambda: len(items) >= 15, timeout=10)
            await asyncio.sleep(0.2)  # anything sent twice would have arrived by now
            reader.cancel()
            assert [i.round for i in items if isinstance(i, SignedReport)] == list(range(1, 16))
            assert not [i for i in items if isinstance(i, GapEvent)]
            assert client.failovers >= 1 and servers[1].hub.subscriber_count == 1
    finally:
        for r in running:
            await r.stop()
        for s in servers:
            await s.stream.close()
        await pub.close()


async def test_leaders_and_servers_ride_through_a_nats_restart(dealt, tmp_path):
    own = NatsServer(tmp_path / "nats").start()  # this test's own: it is restarted under the clients
    try:
        stream = own.stream_settings()
        pub = await publisher(stream)
        server = await fed_server(dealt, stream)
        try:
            for r in range(1, 4):
                await pub.publish(dealt.sign("ETH/USD", r))
            await wait_for(lambda: rounds(server) == [1, 2, 3], timeout=5)
            own.stop()
            own.start()  # same ports, same store: the stream and its messages are still there

            async def published(r: int) -> bool:
                try:
                    await pub.publish(dealt.sign("ETH/USD", r))
                    return True
                except PublishError:
                    return False

            await wait_for(lambda: published(4), timeout=15, interval=0.2, what="the leader to reconnect")
            for r in range(5, 7):
                await pub.publish(dealt.sign("ETH/USD", r))
            # The ordered consumer (gone with the restarted server) is re-created from the last sequence seen.
            await wait_for(lambda: rounds(server) == [1, 2, 3, 4, 5, 6], timeout=15)
        finally:
            await server.stream.close()
            await pub.close()
    finally:
        own.stop()


def test_nats_settings_are_checked():
    assert FeedRoundSection().nats_urls == [] and FeedServerSection().nats_stream == "TESSERA_FEEDS"
    for bad in ({"nats_urls": ["http://127.0.0.1:4222"]}, {"nats_stream": "has.dot"}, {"nats_subject": "a.*"},
                {"nats_subject": "trailing."}):
        with pytest.raises(ValueError):
            FeedRoundSection(**bad)
        with pytest.raises(ValueError):
            FeedServerSection(**bad)
    ok = FeedServerSection(nats_urls=["nats://a:4222", "tls://b:4222"], nats_stream="S-1", nats_subject="x.y")
    assert ok.nats_subject == "x.y"


async def test_ready_only_once_the_stream_is_replayed(dealt):
    server = make_server(dealt)
    running = await RunningServer(server).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(running.url + "/ready") as resp:
                assert resp.status == 200 and (await resp.json())["ready"]  # not fed by NATS: ready
            server.stream = StreamConsumer(server.hub, StreamSettings(("nats://127.0.0.1:1",)))  # not started
            async with http.get(running.url + "/ready") as resp:
                assert resp.status == 503 and "replaying" in (await resp.json())["reason"]
            async with http.get(running.url + "/health") as resp:
                assert resp.status == 200 and (await resp.json())["nats"]["caught_up"] is False
            server.stream.caught_up.set()
            async with http.get(running.url + "/ready") as resp:
                assert resp.status == 200
    finally:
        await running.stop()


def test_secrets_in_nats_urls_are_not_shown():
    urls = ("nats://attester:secret@h1:4222", "tls://h2:4222", "nats://tok3n@h3:4222")
    assert StreamSettings(urls).shown_urls == "nats://attester:***@h1:4222, tls://h2:4222, nats://***@h3:4222"


async def test_a_feed_server_without_nats_says_so(dealt):
    consumer = StreamConsumer(make_server(dealt).hub, StreamSettings(("nats://127.0.0.1:1",)))
    with pytest.raises(ConfigError, match="cannot reach NATS"):
        await consumer.start()


async def test_a_timed_out_publish_is_tried_again_and_stored_once(nats_server, dealt, monkeypatch):
    """A publish whose ack does not come in time may or may not have been stored: the publisher tries
    again with the same message id, and the stream keeps one copy."""
    from nats.errors import TimeoutError as NatsTimeoutError

    stream = nats_server.stream_settings()
    pub = await publisher(stream)
    try:
        real = pub._js.publish
        calls = []

        async def first_ack_lost(*args, **kwargs):
            calls.append(1)
            ack = await real(*args, **kwargs)  # stored by the stream...
            if len(calls) == 1:
                raise NatsTimeoutError  # ... but the ack never reached us
            return ack

        monkeypatch.setattr(pub._js, "publish", first_ack_lost)
        seq = await pub.publish(dealt.sign("ETH/USD", 1))
        assert len(calls) == 2
        info = await pub._js.stream_info(stream.stream)
        assert info.state.messages == 1 and seq == 1

        async def never(*args, **kwargs):
            raise NatsTimeoutError

        monkeypatch.setattr(pub._js, "publish", never)
        with pytest.raises(PublishError, match="3 attempts"):
            await pub.publish(dealt.sign("ETH/USD", 2))
    finally:
        await pub.close()
