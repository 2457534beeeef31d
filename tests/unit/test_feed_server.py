"""The feed server in process on a real socket: ingest, REST, SSE, WebSocket, staleness, slow consumers,
persistence and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import aiohttp
import pytest

from relay.feeds.server import FeedServer, FeedServerError, FeedServerSettings
from relay.feeds.server.app import OPENAPI_PATH
from tests.support.committee import deal
from tests.support.feeds import FEEDS, RunningServer, make_server, read_sse

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def _running(dealt, **settings) -> RunningServer:
    return await RunningServer(make_server(dealt, **settings)).start()


@pytest.fixture
async def srv(dealt):
    running = await _running(dealt, stale_after_s=60)
    yield running
    await running.stop()


async def post(http, srv, report) -> tuple[int, dict]:
    async with http.post(srv.url + "/v1/reports", json=report if isinstance(report, dict) else report.to_json()) as r:
        return r.status, await r.json()


# --- ingest ------------------------------------------------------------------------------------


async def test_ingest_valid_old_duplicate_and_unknown(dealt, srv, http):
    r5 = dealt.sign(round_=5)
    assert await post(http, srv, r5) == (200, {"accepted": True, "feed_id": "ETH/USD", "round": 5})
    status, body = await post(http, srv, r5)
    assert (status, body["accepted"], body["reason"]) == (200, False, "duplicate")
    status, body = await post(http, srv, dealt.sign(round_=4))
    assert (status, body["accepted"]) == (200, False)
    assert "not newer than the latest 5" in body["reason"]
    status, body = await post(http, srv, dealt.sign("SOL/USD", round_=1))
    assert status == 404 and "not configured" in body["reason"]
    status, body = await post(http, srv, dealt.sign(round_=9, decimals=6))
    assert status == 400 and "decimals" in body["reason"]
    # Nothing but round 5 was stored.
    async with http.get(srv.url + "/v1/feeds/ETH/USD/history") as r:
        assert [x["round"] for x in (await r.json())["reports"]] == [5]


async def test_ingest_tampered_and_malformed_are_400(dealt, srv, http):
    good = dealt.sign(round_=7).to_json()
    # The readable price must agree with the signed bytes...
    edited = {**good, "price": "1"}
    status, body = await post(http, srv, edited)
    assert status == 400 and "does not match the encoded report" in body["reason"]
    # ... and editing the signed bytes breaks the signature.
    raw = bytearray(bytes.fromhex(good["report"][2:]))
    raw[60] ^= 1  # inside the price
    forged = {k: v for k, v in good.items() if k not in ("price",)} | {"report": "0x" + raw.hex()}
    status, body = await post(http, srv, forged)
    assert status == 400 and "signature does not verify" in body["reason"]
    # Another committee's signature (same epoch number) is refused too.
    other = deal(epoch=dealt.committee.epoch)
    status, body = await post(http, srv, other.sign(round_=8))
    assert status == 400 and "signature does not verify" in body["reason"]
    status, body = await post(http, srv, {**good, "epoch": 8})
    assert status == 400 and "epoch 8" in body["reason"]
    async with http.post(srv.url + "/v1/reports", data=b"not json") as r:
        assert r.status == 400 and "not JSON" in (await r.json())["reason"]
    status, body = await post(http, srv, {"report": "0x00"})
    assert status == 400 and "malformed" in body["reason"]
    async with http.get(srv.url + "/v1/feeds/ETH/USD/latest") as r:
        assert r.status == 404  # nothing was accepted


async def test_previous_committee_accepted_during_rotation(dealt, http):
    old = deal(epoch=dealt.committee.epoch - 1)
    server = FeedServer(dealt.committee, FEEDS, FeedServerSettings(), previous_committee=old.committee)
    assert server.hub.ingest(old.sign(round_=1)).accepted
    assert server.hub.ingest(dealt.sign(round_=2)).accepted
    assert not server.hub.ingest(deal(epoch=99).sign(round_=3)).accepted


# --- REST --------------------------------------------------------------------------------------


async def test_feeds_latest_history(dealt, srv, http):
    for r in range(1, 6):
        assert (await post(http, srv, dealt.sign(round_=r, price=100 + r)))[1]["accepted"]
    async with http.get(srv.url + "/v1/feeds") as r:
        feeds = {f["id"]: f for f in (await r.json())["feeds"]}
    assert feeds["ETH/USD"]["latest_round"] == 5 and feeds["ETH/USD"]["status"] == "live"
    assert feeds["ETH/USD"]["description"] == "Ether in US dollars" and feeds["ETH/USD"]["decimals"] == 8
    assert feeds["BTC/USD"]["status"] == "no_data" and feeds["BTC/USD"]["latest_round"] is None
    for path in ("/v1/feeds/ETH/USD/latest", "/v1/feeds/ETH%2FUSD/latest"):
        async with http.get(srv.url + path) as r:
            body = await r.json()
        assert body["round"] == 5 and body["price"] == "105" and body["stale"] is False and 0 <= body["age_ms"] < 5000
        assert body["signature"].startswith("0x") and body["epoch"] == dealt.committee.epoch
    async with http.get(srv.url + "/v1/feeds/ETH/USD/history?from_round=2&limit=2") as r:
        body = await r.json()
    assert [x["round"] for x in body["reports"]] == [2, 3] and body["next_from_round"] == 4
    async with http.get(srv.url + "/v1/feeds/ETH/USD/history?limit=abc") as r:
        assert r.status == 400
    async with http.get(srv.url + "/v1/feeds/XRP/USD/latest") as r:
        assert r.status == 404 and "GET /v1/feeds" in (await r.json())["error"]
    async with http.get(srv.url + "/health") as r:
        health = await r.json()
    assert health["ok"] and health["feeds"] == {"ETH/USD": "live", "BTC/USD": "no_data"}
    async with http.get(srv.url + "/metrics") as r:
        text = await r.text()
    assert 'tessera_feed_reports_total{result="accepted"} 5.0' in text


async def test_stale_latest_is_marked(dealt, http):
    running = await _running(dealt, stale_after_s=0.3)
    try:
        # Staleness is by arrival on the server's clock; age_ms is the report's own age (published_at).
        skewed = dealt.sign(round_=1, published_at=int(time.time() * 1000) - 5_000)
        assert (await post(http, running, skewed))[1]["accepted"]
        async with http.get(running.url + "/v1/feeds/ETH/USD/latest") as r:
            body = await r.json()
        assert body["stale"] is False and body["age_ms"] >= 5_000
        await asyncio.sleep(0.4)
        async with http.get(running.url + "/v1/feeds/ETH/USD/latest") as r:
            assert (await r.json())["stale"] is True
        async with http.get(running.url + "/v1/feeds") as r:
            assert {f["id"]: f["status"] for f in (await r.json())["feeds"]}["ETH/USD"] == "stale"
    finally:
        await running.stop()


# --- SSE ---------------------------------------------------------------------------------------


async def test_sse_snapshot_then_live_and_last_event_id_resumption(dealt, srv, http):
    await post(http, srv, dealt.sign(round_=1))
    await post(http, srv, dealt.sign("BTC/USD", round_=1, price=9_000_000))
    async with http.get(srv.url + "/v1/stream?ids=ETH/USD,BTC/USD") as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        snapshot = await read_sse(resp, 2)
        assert sorted(m.id for m in snapshot) == ["BTC/USD:1", "ETH/USD:1"]
        await post(http, srv, dealt.sign(round_=2))
        (live,) = await read_sse(resp, 1)
        assert (live.event, live.id, live.data["round"]) == ("report", "ETH/USD:2", 2)
        last_id = live.id
    # While disconnected: two ETH rounds and one BTC round arrive.
    await post(http, srv, dealt.sign(round_=3))
    await post(http, srv, dealt.sign("BTC/USD", round_=2, price=9_000_001))
    await post(http, srv, dealt.sign(round_=4))
    async with http.get(srv.url + "/v1/stream?ids=ETH/USD,BTC/USD", headers={"Last-Event-ID": last_id}) as resp:
        missed = await read_sse(resp, 3)
        assert [m.id for m in missed] == ["ETH/USD:3", "BTC/USD:2", "ETH/USD:4"]  # in arrival order, nothing twice
    # `since` (what the SDK sends) resumes each feed on its own.
    since = json.dumps({"ETH/USD": 3, "BTC/USD": 2})
    async with http.get(srv.url + "/v1/stream", params=[("id", "ETH/USD"), ("id", "BTC/USD"), ("since", since)]) as resp:
        (m,) = await read_sse(resp, 1)
        assert m.id == "ETH/USD:4"
    async with http.get(srv.url + "/v1/stream?ids=ETH/USD&since=ETH/USD:2") as resp:
        assert [m.id for m in await read_sse(resp, 2)] == ["ETH/USD:3", "ETH/USD:4"]
    for bad in ("?ids=NOPE", "?ids=ETH/USD&since={bad", "?ids=ETH/USD&since=ETH/USD:x"):
        async with http.get(srv.url + "/v1/stream" + bad) as resp:
            assert resp.status == 400 and (await resp.json())["error"]


async def test_gap_when_history_cannot_fill(dealt, http):
    running = await _running(dealt, history_size=3, stale_after_s=60)
    try:
        for r in range(1, 9):
            await post(http, running, dealt.sign(round_=r))
        async with http.get(running.url + "/v1/stream?ids=ETH/USD&since=ETH/USD:2") as resp:
            events = await read_sse(resp, 4)
        assert (events[0].event, events[0].data) == ("gap", {"feed_id": "ETH/USD", "from_round": 3, "to_round": 5})
        assert [e.id for e in events[1:]] == ["ETH/USD:6", "ETH/USD:7", "ETH/USD:8"]
    finally:
        await running.stop()


async def test_stale_event_after_silence_and_live_after_recovery(dealt, http):
    running = await _running(dealt, stale_after_s=0.4)
    try:
        await post(http, running, dealt.sign(round_=1))
        async with http.get(running.url + "/v1/stream?ids=ETH/USD") as resp:
            (snap,) = await read_sse(resp, 1)
            assert snap.id == "ETH/USD:1"
            (stale,) = await read_sse(resp, 1, timeout=3)
            assert stale.event == "stale" and stale.data["feed_id"] == "ETH/USD" and stale.data["last_round"] == 1
            assert stale.data["age_ms"] >= 400
            async with http.get(running.url + "/v1/feeds") as r:
                assert {f["id"]: f["status"] for f in (await r.json())["feeds"]}["ETH/USD"] == "stale"
            await post(http, running, dealt.sign(round_=2))
            live, report = await read_sse(resp, 2)
            assert (live.event, live.data) == ("live", {"feed_id": "ETH/USD", "round": 2})
            assert report.id == "ETH/USD:2"
        # A subscriber arriving while a feed is stale is told so at once (BTC never had data).
        async with http.get(running.url + "/v1/stream?ids=BTC/USD") as resp:
            (m,) = await read_sse(resp, 1)
            assert m.event == "stale" and m.data["last_round"] is None
    finally:
        await running.stop()


def _raw_subscribe(port: int, path: str) -> socket.socket:
    """A subscriber that never reads: tiny receive buffer, request sent, then silence."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


async def test_slow_sse_consumer_dropped_fast_one_keeps_receiving(dealt, http):
    running = await _running(dealt, queue_size=4, send_buffer_bytes=4096, stale_after_s=60)
    server = running.server
    slow = _raw_subscribe(running.port, "/v1/stream?ids=ETH/USD")
    try:
        async with http.get(running.url + "/v1/stream?ids=ETH/USD") as fast:
            for _ in range(100):
                if server.hub.subscriber_count == 2:
                    break
                await asyncio.sleep(0.02)
            assert server.hub.subscriber_count == 2
            total = 0
            received = []
            while server.hub.dropped_count == 0 and total < 3000:
                for _ in range(20):
                    total += 1
                    assert server.hub.ingest(dealt.sign(round_=total)).accepted
                received += await read_sse(fast, 20)  # the fast one reads everything as it comes
            assert server.hub.dropped_count == 1, f"slow consumer not dropped after {total} reports"
            assert server.hub.subscriber_count == 1
            for _ in range(5):
                total += 1
                server.hub.ingest(dealt.sign(round_=total))
            received += await read_sse(fast, 5)
            assert [m.data["round"] for m in received] == list(range(1, total + 1))
        async with http.get(running.url + "/metrics") as r:
            assert 'tessera_feed_dropped_subscribers_total{transport="sse"} 1.0' in await r.text()
    finally:
        slow.close()
        await running.stop()


# --- WebSocket ---------------------------------------------------------------------------------


async def _ws_next(ws, kind: str | None = None, timeout: float = 5.0) -> dict:
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        if kind is None or data["type"] == kind:
            return data


async def test_websocket_subscribe_unsubscribe_errors(dealt, srv, http):
    await post(http, srv, dealt.sign(round_=1))
    async with http.ws_connect(srv.url.replace("http", "ws") + "/v1/ws") as ws:
        await ws.send_str("hello")
        assert "not JSON" in (await _ws_next(ws))["message"]
        await ws.send_json({"op": "dance"})
        assert "unknown op" in (await _ws_next(ws))["message"]
        await ws.send_json({"op": "subscribe", "ids": ["NOPE"]})
        assert "unknown feeds" in (await _ws_next(ws))["message"]
        await ws.send_json({"op": "subscribe", "ids": ["ETH/USD"], "since": {"ETH/USD": "x"}})
        assert (await _ws_next(ws))["type"] == "error"
        await ws.send_json({"op": "subscribe", "ids": ["ETH/USD"]})
        assert await _ws_next(ws) == {"type": "subscribed", "ids": ["ETH/USD"]}
        snap = await _ws_next(ws)
        assert snap["type"] == "report" and snap["report"]["round"] == 1
        await post(http, srv, dealt.sign(round_=2))
        assert (await _ws_next(ws))["report"]["round"] == 2
        await ws.send_json({"op": "unsubscribe", "ids": ["ETH/USD"]})
        assert await _ws_next(ws) == {"type": "unsubscribed", "ids": ["ETH/USD"]}
        await post(http, srv, dealt.sign(round_=3))
        await ws.send_json({"op": "subscribe", "ids": ["ETH/USD"], "since": {"ETH/USD": 1}})
        assert (await _ws_next(ws))["type"] == "subscribed"
        # Resumption: rounds 2 and 3 (3 arrived while unsubscribed), each once.
        assert [(await _ws_next(ws))["report"]["round"] for _ in range(2)] == [2, 3]


async def test_slow_ws_consumer_closed_1008(dealt, http):
    running = await _running(dealt, queue_size=4, send_buffer_bytes=4096, stale_after_s=60, drop_grace_s=10)
    server = running.server
    try:
        async with http.ws_connect(running.url.replace("http", "ws") + "/v1/ws") as slow, \
                http.ws_connect(running.url.replace("http", "ws") + "/v1/ws") as fast:
            for ws in (slow, fast):
                await ws.send_json({"op": "subscribe", "ids": ["ETH/USD"]})
            assert (await _ws_next(fast))["type"] == "subscribed"
            total = 0
            while server.hub.dropped_count == 0 and total < 5000:
                # One report per loop turn, as reports arrive in practice: the writers get to run in between.
                total += 1
                server.hub.ingest(dealt.sign(round_=total))
                assert (await _ws_next(fast, "report"))["report"]["round"] == total
            assert server.hub.dropped_count == 1, f"slow consumer not dropped after {total} reports"
            # The slow one, reading at last, finds the close frame after what was already buffered.
            while True:
                msg = await asyncio.wait_for(slow.receive(), 10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008 and msg.extra == "slow consumer"
            server.hub.ingest(dealt.sign(round_=total + 1))
            assert (await _ws_next(fast, "report"))["report"]["round"] == total + 1
    finally:
        await running.stop()


# --- persistence, limits, settings -------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def history_db(request: pytest.FixtureRequest, tmp_path):
    """The history database of a test's server: an SQLite file, or a new database on the run's
    PostgreSQL server; the tests taking it run on both engines."""
    if request.param == "sqlite":
        return tmp_path / "feeds.db"
    return request.getfixturevalue("postgres").create_database("feed_history")


async def test_history_survives_restart_with_db(dealt, history_db, http):
    db = history_db
    first = make_server(dealt, db=db, history_size=3)
    for r in range(1, 6):
        assert first.hub.ingest(dealt.sign(round_=r)).accepted
    first.hub.db.close()
    running = await RunningServer(make_server(dealt, db=db, history_size=3)).start()
    try:
        async with http.get(running.url + "/v1/feeds/ETH/USD/history") as r:
            body = await r.json()
        assert [x["round"] for x in body["reports"]] == [3, 4, 5] and body["complete_after"] == 2
        assert (await post(http, running, dealt.sign(round_=5)))[1]["accepted"] is False
        async with http.get(running.url + "/v1/stream?ids=ETH/USD&since=ETH/USD:1") as resp:
            events = await read_sse(resp, 4)
        assert events[0].event == "gap" and events[0].data["to_round"] == 2
        assert [e.id for e in events[1:]] == ["ETH/USD:3", "ETH/USD:4", "ETH/USD:5"]
    finally:
        await running.stop()


async def test_max_subscribers(dealt, http):
    running = await _running(dealt, max_subscribers=1, stale_after_s=60)
    try:
        async with http.get(running.url + "/v1/stream") as first:
            assert first.status == 200
            async with http.get(running.url + "/v1/stream") as second:
                assert second.status == 503 and "subscribers" in (await second.json())["error"]
    finally:
        await running.stop()


def test_settings_errors(dealt):
    with pytest.raises(FeedServerError, match="queue_size"):
        FeedServerSettings(queue_size=0)
    with pytest.raises(FeedServerError, match="not configured"):
        FeedServer(dealt.committee, FEEDS, FeedServerSettings(stale_after={"XRP/USD": 1}))
    with pytest.raises(FeedServerError, match="no feeds"):
        FeedServer(dealt.committee, {}, FeedServerSettings())


# --- OpenAPI -----------------------------------------------------------------------------------


async def test_openapi_lists_every_route(dealt, srv, http):
    async with http.get(srv.url + "/openapi.json") as r:
        doc = await r.json()
    assert doc == json.loads(OPENAPI_PATH.read_text())
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item
                  if method in ("get", "post", "put", "delete", "patch")}
    served = set()
    for route in srv.server.app.router.routes():
        if route.method == "HEAD":
            continue
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical)
        served.add((path, route.method))
    assert served == documented
    # Every $ref points at a defined schema.
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs and refs <= set(doc["components"]["schemas"])


async def test_openapi_schemas_match_real_responses(dealt, srv, http):
    schemas = json.loads(OPENAPI_PATH.read_text())["components"]["schemas"]

    def props(name):
        return set(schemas[name]["properties"])

    report = dealt.sign(round_=1)
    assert set(report.to_json()) == props("SignedReport")
    await post(http, srv, report)
    async with http.get(srv.url + "/v1/feeds") as r:
        body = await r.json()
    assert set(body) == props("FeedList") and all(set(f) == props("FeedSummary") for f in body["feeds"])
    async with http.get(srv.url + "/v1/feeds/ETH/USD/latest") as r:
        extra = schemas["LatestReport"]["allOf"][1]["properties"]
        assert set(await r.json()) == props("SignedReport") | set(extra)
    async with http.get(srv.url + "/v1/feeds/ETH/USD/history") as r:
        assert set(await r.json()) == props("History")
    async with http.get(srv.url + "/health") as r:
        assert set(await r.json()) == props("Health")
    assert set(srv.server.hub.ingest(dealt.sign(round_=1)).to_json()) <= props("IngestResult")
    srv.server.hub.check_stale(now_ms=10**13)
    stale = srv.server.feeds["ETH/USD"].stale_event(10**13).data
    assert set(stale) == props("StaleEvent")


async def test_hung_up_subscribers_are_unregistered_at_once(dealt, srv, http):
    async with http.get(srv.url + "/v1/stream?ids=ETH/USD") as resp:
        assert resp.status == 200
        async with http.ws_connect(srv.url.replace("http", "ws") + "/v1/ws") as ws:
            await ws.send_json({"op": "subscribe", "ids": ["ETH/USD"]})
            assert (await _ws_next(ws))["type"] == "subscribed"
            assert srv.server.hub.subscriber_count == 2
    for _ in range(100):  # well before the 15 s keepalive
        if srv.server.hub.subscriber_count == 0:
            break
        await asyncio.sleep(0.02)
    assert srv.server.hub.subscriber_count == 0
