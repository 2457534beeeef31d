"""Shared by the feed server/client tests: two feeds, a feed server on a free port (serving a committee
dealt by tests.support.committee), and `read_sse`: the next events of a stream through relay.feeds.sse
(not through the SDK client under test)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from relay.devstack import free_port
from relay.feeds.config import FeedConfig
from relay.feeds.server import FeedServer, FeedServerSettings
from relay.feeds.sse import read_events
from tests.support.committee import Dealt

FEEDS = {
    fid: FeedConfig.model_validate({"id": fid, "description": desc, "decimals": 8,
                                    "sources": [{"kind": "file", "path": "x.csv"}]})
    for fid, desc in [("ETH/USD", "Ether in US dollars"), ("BTC/USD", "Bitcoin in US dollars")]
}


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
