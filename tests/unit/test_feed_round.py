"""One whole feed round in process: four attesters read their own sources (a loopback HTTP server and a
recording), sign observations, the leader builds the report, attesters check it and sign it, the
partials combine into a signature the committee key verifies, and the push rule fires."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest
from aiohttp import web

import attest
from relay.feeds import (
    NotEnoughSourcesError,
    PushPolicy,
    ReportRejected,
    build_report,
    build_sources,
    check_proposal,
    gather_quotes,
    own_observation,
    parse_feeds,
    sign_observation,
)

BACKEND = "zksnake"
NOW_S = 1_795_431_723.0
# What each attester's two exchanges answer (attester 4's are broken: a decimal point went missing).
VIEWS = {1: ("3456.10", "3456.30"), 2: ("3456.20", "3456.25"), 3: ("3455.90", None), 4: ("345620", "345630")}


@pytest.fixture
async def exchange():
    async def handle(request: web.Request) -> web.Response:
        member, venue = int(request.match_info["member"]), request.match_info["venue"]
        price = VIEWS[member][0 if venue == "coinbase" else 1]
        if price is None:
            return web.Response(status=503, text="maintenance")
        if venue == "coinbase":
            body = {"data": {"amount": price, "base": "ETH", "currency": "USD"}}
        else:
            body = {"error": [], "result": {"XETHZUSD": {"c": [price, "0.5"]}}}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/{member}/{venue}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


def feed_for(base: str, member: int, recording: Path):
    table = {
        "decimals": 8,
        "min_sources": 2,
        "tolerance_bps": 50,
        "sources": [
            {"kind": "http_json", "name": "coinbase", "url": f"{base}/{member}/coinbase", "price_path": "data.amount"},
            {"kind": "http_json", "name": "kraken", "url": f"{base}/{member}/kraken", "price_path": "result.XETHZUSD.c.0"},
            {"kind": "file", "name": "recorded", "path": str(recording), "max_age_s": 3600},
        ],
    }
    return parse_feeds({"feeds": {"ETH/USD": table}})["ETH/USD"]


async def test_a_whole_round(exchange, tmp_path: Path) -> None:
    recording = tmp_path / "eth.jsonl"
    recording.write_text("".join(json.dumps({"timestamp": 100 + i, "price": p}) + "\n" for i, p in enumerate(["3456.15", "3456.18"])))
    committee, shares = attest.deal(4, 3, epoch=2, rng=random.Random(44), backend=BACKEND)
    clock = lambda: NOW_S  # noqa: E731
    round_ = 1

    own = {}
    signed = []
    for member in (1, 2, 3, 4):
        feed = feed_for(exchange, member, recording)
        sources = build_sources(feed, clock=clock)
        try:
            got = await gather_quotes(sources)
        finally:
            for source in sources.values():
                await source.close()
        if member == 3:
            assert list(got.failures) == ["kraken"] and "HTTP 503" in got.failures["kraken"]
        obs = own_observation(feed, round_, member, got.quotes, got.failures)
        own[member] = obs
        signed.append(sign_observation(shares[member - 1], obs, committee.epoch, BACKEND))
    assert own[1].price == 345_615_000_000 and own[4].price == 34_562_000_000_000  # the broken one

    feed = feed_for(exchange, 1, recording)
    now_ms = int(NOW_S * 1000)
    built = build_report(feed, committee, round_, signed, now_ms, BACKEND)
    assert built.report.observations == 4
    assert 345_590_000_000 <= built.report.price <= 345_625_000_000  # among the honest views

    digest = built.report.digest(committee.epoch)
    partials = []
    for member in (1, 2, 3, 4):
        try:
            check_proposal(feed, committee, built.report, built.observations, own=own[member], now_ms=now_ms, backend=BACKEND)
        except ReportRejected as exc:
            assert member == 4 and exc.code == "out_of_tolerance"  # the broken attester refuses, harmlessly
            continue
        partials.append(attest.partial_sign(shares[member - 1], digest, BACKEND))
    assert len(partials) == 3
    combined = attest.combine(committee, digest, partials, backend=BACKEND)
    assert combined.ok and committee.verify(digest, combined.signature, BACKEND)
    assert PushPolicy.for_feed(feed).should_push(None, built.report, now_ms).push


async def test_attester_without_enough_sources_sits_the_round_out(exchange, tmp_path: Path) -> None:
    recording = tmp_path / "gone.jsonl"
    recording.write_text(json.dumps({"timestamp": 1, "price": "1"}) + "\n")
    feed = feed_for(exchange, 3, recording).model_copy(update={"min_sources": 3})
    sources = build_sources(feed, clock=lambda: NOW_S)
    got = await gather_quotes(sources)
    for source in sources.values():
        await source.close()
    with pytest.raises(NotEnoughSourcesError, match="2 of 3 sources answered, min_sources is 3.*kraken: GET .* HTTP 503"):
        own_observation(feed, 1, 3, got.quotes, got.failures)
