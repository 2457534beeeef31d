"""relay.feeds.sse: the one SSE encoder and reader (WHATWG event-stream rules)."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from relay.devstack import free_port
from relay.feeds.sse import SseDecoder, SseError, SseEvent, encode_comment, encode_event, read_events


def decode_all(*chunks: bytes) -> list[SseEvent]:
    decoder = SseDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.close()


def test_encode_then_decode_roundtrip_with_multiline_data() -> None:
    wire = encode_event("line one\nline two", event="report", id="ETH/USD:7") + encode_comment("keepalive")
    assert wire == b"id: ETH/USD:7\nevent: report\ndata: line one\ndata: line two\n\n: keepalive\n\n"
    assert decode_all(wire) == [SseEvent("report", "line one\nline two", "ETH/USD:7")]


def test_fields_comments_retry_and_defaults() -> None:
    decoder = SseDecoder()
    events = decoder.feed(b"retry: 1000\n\n: keepalive\n\ndata:no space\n\nevent: gap\ndata: {}\nunknown: x\n\n")
    assert events == [SseEvent("message", "no space", None), SseEvent("gap", "{}", None)]
    assert decoder.retry_ms == 1000
    assert decoder.feed(b"retry: soon\n\n") == [] and decoder.retry_ms == 1000  # not digits: ignored


def test_last_event_id_persists_but_each_event_reports_its_own() -> None:
    decoder = SseDecoder()
    events = decoder.feed(b"id: a:1\ndata: 1\n\ndata: 2\n\n")
    assert [e.id for e in events] == ["a:1", None]
    assert decoder.last_event_id == "a:1"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_any_line_ending_split_anywhere(newline: bytes) -> None:
    wire = (b"event: report" + newline + b"data: caf\xc3\xa9" + newline + newline) * 2
    for cut in range(1, len(wire)):
        events = decode_all(wire[:cut], wire[cut:])
        assert events == [SseEvent("report", "café")] * 2, cut


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    assert decode_all(b"data: complete\n\ndata: partial\n") == [SseEvent("message", "complete")]


def test_an_oversized_event_is_refused() -> None:
    decoder = SseDecoder(max_event_bytes=64)
    with pytest.raises(SseError, match="exceeds 64 bytes"):
        decoder.feed(b"data: " + b"x" * 100)


async def test_read_events_resumes_on_the_same_response() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(encode_event(retry=1000) + b"".join(
            encode_event(json.dumps({"n": n}), event="report", id=f"f:{n}") for n in range(3)))
        return resp

    app = web.Application()
    app.router.add_get("/", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/") as resp:
            async for event in read_events(resp):
                assert event.id == "f:0"
                break
            assert [json.loads(e.data)["n"] async for e in read_events(resp)] == [1, 2]
    finally:
        await runner.cleanup()
