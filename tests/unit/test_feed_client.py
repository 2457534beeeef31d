"""The SDK feed client against the real feed server in process (and, for duplicate delivery, a fake
one): verification, refusal of stale/uncertain/tampered reports, reconnection with resumption and
de-duplication, gap and stale events."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from relay.devstack import free_port
from relay.feeds.client import (
    ConfidenceTooWideError,
    FeedClientError,
    FeedNotFoundError,
    FeedsClient,
    FeedUnavailableError,
    GapEvent,
    LiveEvent,
    ReportRejectedEvent,
    ReportVerificationError,
    StaleEvent,
    StaleReportError,
)
from relay.feeds.signed import SignedReport
from relay.feeds.sse import encode_event
from tests.support.committee import deal
from tests.support.feeds import RunningServer, make_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def srv(dealt):
    running = await RunningServer(make_server(dealt, stale_after_s=60)).start()
    yield running
    await running.stop()


def client(url, dealt, **kw) -> FeedsClient:
    kw.setdefault("reconnect_base_s", 0.05)
    kw.setdefault("reconnect_cap_s", 0.2)
    return FeedsClient(url, dealt.committee, **kw)


async def take(stream, count: int, timeout: float = 10.0) -> list:
    out = []

    async def run():
        async for item in stream:
            out.append(item)
            if len(out) == count:
                return

    await asyncio.wait_for(run(), timeout)
    return out


class FakeFeedServer:
    """Serves whatever SSE body the test scripts (the real server never repeats a round)."""

    def __init__(self, script) -> None:
        self.script = script  # list of (list of report dicts) per connection
        self.requests: list[dict] = []
        self.port = free_port()
        self.runner = None

    async def start(self):
        async def stream(request: web.Request) -> web.StreamResponse:
            self.requests.append({"ids": request.query.getall("id", []), "since": request.query.get("since")})
            n = len(self.requests) - 1
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for body in self.script[min(n, len(self.script) - 1)]:
                data = json.dumps(body)
                await resp.write(encode_event(data, event="report", id="x"))
            return resp  # closing the stream: the client must reconnect

        async def latest(request: web.Request) -> web.Response:
            return web.json_response(self.script[0][0])

        app = web.Application()
        app.router.add_get("/v1/stream", stream)
        app.router.add_get("/v1/feeds/{id:.+}/latest", latest)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    async def stop(self):
        await self.runner.cleanup()


# --- latest ------------------------------------------------------------------------------------


async def test_latest_verified(dealt, srv):
    report = dealt.sign(round_=3)
    assert srv.server.hub.ingest(report).accepted
    async with client(srv.url, dealt) as feeds:
        got = await feeds.latest("ETH/USD")
        assert got == report and got.verify(dealt.committee)
        with pytest.raises(FeedNotFoundError, match="no report yet"):
            await feeds.latest("BTC/USD")
        with pytest.raises(FeedNotFoundError, match="unknown feed"):
            await feeds.latest("XRP/USD")


async def test_latest_refuses_stale_and_wide_reports(dealt, srv):
    old_ms = int(time.time() * 1000) - 120_000
    srv.server.hub.ingest(dealt.sign(round_=1, published_at=old_ms))
    async with client(srv.url, dealt) as feeds:
        with pytest.raises(StaleReportError, match="max_age_s=60"):
            await feeds.latest("ETH/USD")
    async with client(srv.url, dealt, max_age_s=300) as feeds:
        assert (await feeds.latest("ETH/USD")).round == 1
    # confidence 10 % of the price
    srv.server.hub.ingest(dealt.sign(round_=2, price=1_000_000, confidence=100_000))
    async with client(srv.url, dealt) as feeds:
        with pytest.raises(ConfidenceTooWideError, match="10.0000%"):
            await feeds.latest("ETH/USD")
    async with client(srv.url, dealt, max_confidence_ratio=0.2) as feeds:
        assert (await feeds.latest("ETH/USD")).round == 2
    async with client(srv.url, dealt, max_confidence_ratio=None) as feeds:
        assert (await feeds.latest("ETH/USD")).round == 2


async def test_tampered_report_rejected(dealt):
    good = dealt.sign(round_=4).to_json()
    raw = bytearray(bytes.fromhex(good["report"][2:]))
    raw[70] ^= 0x01  # price, inside the signed bytes
    tampered = {k: v for k, v in good.items() if k != "price"} | {"report": "0x" + raw.hex()}
    fake = await FakeFeedServer([[tampered]]).start()
    try:
        async with client(fake.url, dealt) as feeds:
            with pytest.raises(ReportVerificationError, match="does not verify"):
                await feeds.latest("ETH/USD")
        # Another committee's client refuses even the untampered report.
        other = deal(epoch=dealt.committee.epoch)
        fake.script = [[good]]
        async with FeedsClient(fake.url, other.committee) as feeds:
            with pytest.raises(ReportVerificationError):
                await feeds.latest("ETH/USD")
    finally:
        await fake.stop()


async def test_stream_reports_rejected_events_and_raise_option(dealt):
    good1, good2 = dealt.sign(round_=1).to_json(), dealt.sign(round_=3).to_json()
    forged = {**dealt.sign(round_=2).to_json(), "signature": good1["signature"]}
    fake = await FakeFeedServer([[good1, forged, good2]]).start()
    try:
        async with client(fake.url, dealt) as feeds:
            items = await take(feeds.stream(["ETH/USD"]), 3)
            assert isinstance(items[0], SignedReport) and items[0].round == 1
            assert isinstance(items[1], ReportRejectedEvent) and items[1].round == 2
            assert isinstance(items[1].error, ReportVerificationError)
            assert isinstance(items[2], SignedReport) and items[2].round == 3
            with pytest.raises(ReportVerificationError):
                await take(feeds.stream(["ETH/USD"], raise_on_reject=True), 3)
    finally:
        await fake.stop()


async def test_unavailable_and_bad_arguments(dealt):
    async with client(f"http://127.0.0.1:{free_port()}", dealt) as feeds:
        with pytest.raises(FeedUnavailableError, match="relay feed-server"):
            await feeds.latest("ETH/USD")
        with pytest.raises(FeedClientError, match="at least one feed"):
            await take(feeds.stream([]), 1)
        with pytest.raises(FeedClientError, match="transport"):
            await take(feeds.stream(["ETH/USD"], transport="carrier-pigeon"), 1)
    with pytest.raises(FeedClientError, match="http"):
        FeedsClient("ftp://x", dealt.committee)


# --- streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_stream_verified_reports_and_unknown_feed(dealt, srv, transport):
    srv.server.hub.ingest(dealt.sign(round_=1))
    async with client(srv.url, dealt) as feeds:
        stream = feeds.stream(["ETH/USD", "BTC/USD"], transport=transport)
        (first,) = await take(stream, 1)
        assert first.round == 1
        srv.server.hub.ingest(dealt.sign("BTC/USD", round_=1))
        srv.server.hub.ingest(dealt.sign(round_=2))
        got = await take(stream, 2)
        assert [(r.feed_id, r.round) for r in got] == [("BTC/USD", 1), ("ETH/USD", 2)]
        await stream.aclose()
        with pytest.raises(FeedNotFoundError, match="unknown feeds"):
            await take(feeds.stream(["NOPE"], transport=transport), 1)


async def test_stream_dedups_and_resumes_after_reconnect_fake(dealt):
    r = {i: dealt.sign(round_=i).to_json() for i in range(1, 5)}
    # Connection 1 repeats and reorders; connection 2 overlaps what was already seen.
    fake = await FakeFeedServer([[r[1], r[2], r[2], r[1], r[3]], [r[3], r[4]], []]).start()
    try:
        async with client(fake.url, dealt) as feeds:
            got = await take(feeds.stream(["ETH/USD"]), 4)
        assert [x.round for x in got] == [1, 2, 3, 4]
        assert fake.requests[0]["since"] is None
        assert json.loads(fake.requests[1]["since"]) == {"ETH/USD": 3}
        assert feeds.reconnects >= 1
    finally:
        await fake.stop()


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_reconnect_after_server_restart_resumes_without_duplicates(dealt, tmp_path, transport):
    db = tmp_path / "feeds.db"
    port = free_port()
    first = await RunningServer(make_server(dealt, db=db, stale_after_s=60), port).start()
    async with client(first.url, dealt) as feeds:
        stream = feeds.stream(["ETH/USD"], transport=transport)
        first.server.hub.ingest(dealt.sign(round_=1))
        got = await take(stream, 1)
        for i in (2, 3):
            first.server.hub.ingest(dealt.sign(round_=i))
        got += await take(stream, 2)
        await first.stop()  # killed mid-stream
        first.server.hub.db.close()
        second_server = make_server(dealt, db=db, stale_after_s=60)
        for i in (4, 5):  # published while the client was away
            assert second_server.hub.ingest(dealt.sign(round_=i)).accepted
        second = await RunningServer(second_server, port).start()
        try:
            got += await take(stream, 2)
            second_server.hub.ingest(dealt.sign(round_=6))
            got += await take(stream, 1)
        finally:
            await stream.aclose()
            await second.stop()
    assert [x.round for x in got] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(x, SignedReport) for x in got)
    assert feeds.reconnects >= 1


async def test_gap_event_when_restarted_server_cannot_fill_the_hole(dealt):
    port = free_port()
    first = await RunningServer(make_server(dealt, stale_after_s=60), port).start()
    async with client(first.url, dealt) as feeds:
        stream = feeds.stream(["ETH/USD"])
        got = []
        for i in (1, 2):  # one at a time: a new subscription starts at the latest report
            first.server.hub.ingest(dealt.sign(round_=i))
            got += await take(stream, 1)
        await first.stop()
        # A fresh server without persistence, which kept only the last 2 of rounds 3..7.
        fresh = make_server(dealt, history_size=2, stale_after_s=60)
        for i in range(3, 8):
            fresh.hub.ingest(dealt.sign(round_=i))
        second = await RunningServer(fresh, port).start()
        try:
            got += await take(stream, 3)
        finally:
            await stream.aclose()
            await second.stop()
    assert [x.round for x in got[:2]] == [1, 2]
    assert got[2] == GapEvent("ETH/USD", 3, 5)
    assert [x.round for x in got[3:]] == [6, 7]


async def test_stale_and_live_events(dealt):
    running = await RunningServer(make_server(dealt, stale_after_s=0.4)).start()
    try:
        async with client(running.url, dealt) as feeds:
            stream = feeds.stream(["ETH/USD"], transport="ws")
            running.server.hub.ingest(dealt.sign(round_=1))
            (report,) = await take(stream, 1)
            (stale,) = await take(stream, 1, timeout=5)
            assert isinstance(stale, StaleEvent) and stale.last_round == 1 and stale.source == "server"
            running.server.hub.ingest(dealt.sign(round_=2))
            live, fresh = await take(stream, 2)
            assert live == LiveEvent("ETH/USD", 2) and fresh.round == 2
            await stream.aclose()
    finally:
        await running.stop()


async def test_client_says_stale_when_no_server_reachable(dealt, srv):
    srv.server.hub.ingest(dealt.sign(round_=1))
    now = [time.time()]
    async with client(srv.url, dealt, clock=lambda: now[0], max_age_s=30) as feeds:
        stream = feeds.stream(["ETH/USD"], check_interval_s=0.05)
        (report,) = await take(stream, 1)
        await srv.stop()
        now[0] += 31  # the server is gone and the last price ages past max_age_s
        (event,) = await take(stream, 1)
        assert event == StaleEvent("ETH/USD", 1, event.age_ms, "client") and event.age_ms > 30_000
        await stream.aclose()


async def test_sdk_attach(dealt, srv, tmp_path):
    from relay.config import parse_config
    from relay.sdk import TesseraClient

    committee_file = tmp_path / "committee.toml"
    dealt.committee.save(committee_file)
    config = parse_config({"chains": {}, "committee": {"file": str(committee_file)},
                           "feed_server": {"listen": f"127.0.0.1:{srv.port}"}})
    srv.server.hub.ingest(dealt.sign(round_=9))
    async with TesseraClient(config) as sdk:
        assert (await sdk.feeds.latest("ETH/USD")).round == 9
        (report,) = await take(sdk.feeds.stream(["ETH/USD"]), 1)
        assert report.round == 9


async def test_a_forged_report_does_not_advance_the_resume_cursor(dealt):
    good1, good2 = dealt.sign(round_=1).to_json(), dealt.sign(round_=2).to_json()
    forged = {**dealt.sign(round_=2, price=1).to_json(), "signature": good1["signature"]}
    # Connection 1 sends round 1 and a forged round 2, then closes; connection 2 has the real round 2.
    fake = await FakeFeedServer([[good1, forged], [good2], []]).start()
    try:
        async with client(fake.url, dealt) as feeds:
            items = await take(feeds.stream(["ETH/USD"]), 3)
        assert isinstance(items[1], ReportRejectedEvent) and items[1].round == 2
        assert isinstance(items[2], SignedReport) and items[2].round == 2 and items[2].to_json() == good2
        assert json.loads(fake.requests[1]["since"]) == {"ETH/USD": 1}  # resumes before the forged round
    finally:
        await fake.stop()
