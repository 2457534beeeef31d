"""Shared by the feed server/client tests: a dealt committee, signed reports, a server on a free port,
and `read_sse`: the next events of a stream through relay.feeds.sse (not through the SDK client under test)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

import attest
from attest.threshold import combine_signatures
from relay.devstack import free_port
from relay.feeds.config import FeedConfig
from relay.feeds.report import FeedReport
from relay.feeds.server import FeedServer, FeedServerSettings
from relay.feeds.signed import SignedReport
from relay.feeds.sse import read_events

FEEDS = {
    fid: FeedConfig.model_validate({"id": fid, "description": desc, "decimals": 8,
                                    "sources": [{"kind": "file", "path": "x.csv"}]})
    for fid, desc in [("ETH/USD", "Ether in US dollars"), ("BTC/USD", "Bitcoin in US dollars")]
}


@dataclass
class Dealt:
    committee: object
    shares: list

    def sign(self, feed_id: str = "ETH/USD", round_: int = 1, price: int = 3_456_10000000, confidence: int = 5_000000,
             published_at: int | None = None, decimals: int = 8) -> SignedReport:
        now = time.time_ns() // 1_000_000 if published_at is None else published_at
        report = FeedReport(feed_id, round_, price, confidence, decimals, 3, now - 20, now)
        epoch = self.committee.epoch
        digest = report.digest(epoch)
        partials = [attest.partial_sign(s, digest) for s in self.shares[: self.committee.t]]
        return SignedReport(report, epoch, combine_signatures(partials))


def deal(n: int = 3, t: int = 2, epoch: int = 7) -> Dealt:
    committee, shares = attest.deal(n, t, epoch=epoch)
    return Dealt(committee, shares)


class RunningServer:
    def __init__(self, server: FeedServer, port: int | None = None) -> None:
        self.server = server
        self.port = port or free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "RunningServer":
        self.runner = web.AppRunner(self.server.app, access_log=None, shutdown_timeout=1, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def make_server(dealt: Dealt, feeds=None, **settings) -> FeedServer:
    return FeedServer(dealt.committee, feeds or FEEDS, FeedServerSettings(**settings))


@dataclass
class SseMessage:
    event: str
    data: object
    id: str | None


async def read_sse(resp: aiohttp.ClientResponse, count: int, timeout: float = 5.0,
                   kinds: tuple[str, ...] = ("report", "stale", "live", "gap", "dropped")) -> list[SseMessage]:
    """The next `count` events of the given kinds, JSON-decoded (comments, `retry` and other kinds skipped)."""
    out: list[SseMessage] = []

    async def run() -> None:
        async for event in read_events(resp):
            if event.event in kinds:
                out.append(SseMessage(event.event, json.loads(event.data), event.id))
                if len(out) == count:
                    return
        raise EOFError("stream closed")

    await asyncio.wait_for(run(), timeout)
    return out
