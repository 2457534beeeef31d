"""Feed rounds on real attester processes (`relay attester`, started as an operator starts them): each
member reads a loopback exchange served by this test and a recording, the members run rounds among
themselves, and the leader of each round POSTs the signed report to a sink run by this test. Kill
the leader and reports keep coming; kill two of four (t = 3) and none do. The leaders also publish to
a real feed server (relay/feeds/server/) whose SDK subscriber sees the reports, then `stale`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import tomli_w
from aiohttp import web

from attest.committee import Committee
from attest.dealer import deal_to_directory
from attest.keystore import generate_key_file
from relay.config import load_config
from relay.devstack import free_port, wait_http
from relay.feeds.client import FeedsClient, StaleEvent
from relay.feeds.round import leader_of, round_of
from relay.feeds.server import FeedServer, FeedServerSettings
from relay.feeds.signed import SignedReport
from relay.processes import ChildProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

INTERVAL_MS = 300
SPOT = "3001.00"


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


class Sink:
    """What a feed server would be: POST /v1/reports, here kept as (arrival time, JSON body)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict]] = []

    def app(self) -> web.Application:
        async def reports(request: web.Request) -> web.Response:
            self.received.append((time.monotonic(), await request.json()))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/v1/reports", reports)
        return app

    def since(self, moment: float) -> list[SignedReport]:
        return [SignedReport.from_json(body) for at, body in self.received if at >= moment]


def exchange_app() -> web.Application:
    async def price(request: web.Request) -> web.Response:
        return web.json_response({"data": {"amount": SPOT}})

    app = web.Application()
    app.router.add_get("/spot", price)
    return app


def write_config(root: Path, exchange: str, sinks: list[str], n: int = 4, t: int = 3) -> tuple[Path, Committee]:
    keys = root / "keys"
    keys.mkdir(parents=True)
    endpoints = [f"http://127.0.0.1:{free_port()}" for _ in range(n)]
    committee = deal_to_directory(keys / "committee", n, t, 5, generate_key_file(keys / "committee.key"), endpoints)
    (root / "eth.csv").write_text("timestamp,price\n1,3001.10\n2,3001.30\n")
    config = {
        "chains": {},  # feed rounds need no chain: the attesters run only them here
        "committee": {"file": "keys/committee/committee.toml", "share": "keys/committee/share-{index}.json",
                      "key_file": "keys/committee.key"},
        "attester": {"db": "attester-{index}.db"},
        "feed_round": {"interval_ms": INTERVAL_MS, "collect_ms": 30, "leader_timeout_ms": 120,
                       "publish_urls": sinks},  # bare URLs: the node POSTs to <url>/v1/reports
        "feeds": {"ETH/USD": {
            "decimals": 8,
            "tolerance_bps": 50,
            "sources": [
                # One config serves every member (as in a localnet), so all read the same two sources.
                {"kind": "http_json", "name": "exchange", "url": f"{exchange}/spot", "price_path": "data.amount"},
                {"kind": "file", "name": "recorded", "path": "eth.csv", "max_age_s": 3600},
            ],
        }},
    }
    path = root / "config.toml"
    path.write_text(tomli_w.dumps(config))
    return path, committee


async def test_rounds_on_attester_processes(tmp_path: Path) -> None:
    sink = Sink()
    sink_runner, sink_url = await serve(sink.app())
    exchange_runner, exchange_url = await serve(exchange_app())
    server_port = free_port()
    config_path, committee = write_config(tmp_path, exchange_url, [sink_url, f"http://127.0.0.1:{server_port}"])
    server = FeedServer(committee, load_config(config_path).feeds, FeedServerSettings(stale_after_s=1.0))
    server_runner = web.AppRunner(server.app, access_log=None)
    await server_runner.setup()
    await web.TCPSite(server_runner, "127.0.0.1", server_port).start()
    updates: list[tuple[float, object]] = []

    async def subscribe() -> None:
        async with FeedsClient(f"http://127.0.0.1:{server_port}", committee) as client:
            async for update in client.stream(["ETH/USD"]):
                updates.append((time.monotonic(), update))

    subscriber = asyncio.create_task(subscribe())
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": "info"}
    procs: dict[int, ChildProcess] = {}
    try:
        for index in committee.indices:
            procs[index] = ChildProcess(f"attester-{index}", [sys.executable, "-m", "relay.cli", "attester",
                                        "--index", str(index), "--config", str(config_path)],
                                        tmp_path / "logs" / f"attester-{index}.log", env=env)
            procs[index].start()
        await asyncio.gather(*(wait_http(f"{committee.member(i).endpoint}/health", procs[i]) for i in procs))

        # All four up: a signed report per round arrives at the sink and verifies against the committee.
        start = time.monotonic()
        await wait_for(lambda: len(sink.since(start)) >= 5, 30, "five reports")
        reports = sink.since(start)
        assert all(r.verify(committee) for r in reports)
        assert len({r.round for r in reports}) == len(reports)
        assert all(r.report.observations >= 3 and r.report.decimals == 8 for r in reports)
        # Each view is the lower median of the exchange (3001.00) and the recording (3001.10, 3001.30).
        assert all(r.report.price == 300_100_000_000 and r.report.confidence == 0 for r in reports)

        # Kill (SIGKILL) the member that leads the next round: its rounds fail over to the next member.
        victim = leader_of(committee, reports[-1].round + 2, 0)
        os.kill(procs[victim].pid, signal.SIGKILL)
        killed = time.monotonic()
        await wait_for(lambda: any(leader_of(committee, r.round, 0) == victim for r in sink.since(killed)),
                         30, f"a report for a round member {victim} should have led")
        await wait_for(lambda: len(sink.since(killed)) >= 6, 30, "six reports after the kill")
        after = sink.since(killed)
        assert all(r.verify(committee) for r in after)
        assert {r.report.observations for r in after if r.round > after[0].round} == {3}

        # Two of four down with t = 3: no round that starts after the kill is published.
        second = next(i for i in committee.indices if i != victim)
        os.kill(procs[second].pid, signal.SIGKILL)
        second_killed = time.monotonic()
        last_possible = round_of(int(time.time() * 1000), INTERVAL_MS)  # began before the kill (or at it)
        survivors = [i for i in committee.indices if i not in (victim, second)]

        async def survivors_metrics() -> str:
            texts = []
            async with aiohttp.ClientSession() as session:
                for i in survivors:
                    async with session.get(f"{committee.member(i).endpoint}/v1/feeds/metrics") as resp:
                        texts.append(await resp.text())
            return "\n".join(texts)

        def failed_rounds(text: str, reason: str) -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("tessera_feed_rounds_failed_total") and f'reason="{reason}"' in line)

        before = await survivors_metrics()

        async def rounds_failed_since() -> bool:
            # The survivors say why, on their metrics endpoint: too few observations, and no proposal.
            now = await survivors_metrics()
            return all(failed_rounds(now, reason) >= failed_rounds(before, reason) + 2
                       for reason in ("not_enough_observations", "no_proposal"))

        await wait_for(rounds_failed_since, 60, "two more failed rounds at the survivors, for each reason")
        late = [r.round for r in sink.since(second_killed) if r.round > last_possible]
        assert late == [], f"rounds {late} began after t members were gone, yet were published"
        # The subscriber got verified reports while t members were up, then the server said stale.
        await wait_for(lambda: any(isinstance(u, StaleEvent) and u.feed_id == "ETH/USD"
                                   for at, u in updates if at >= second_killed), 60, "a stale event after the kill")
        streamed = [u for _, u in updates if isinstance(u, SignedReport)]
        assert len(streamed) >= 10 and all(u.verify(committee) for u in streamed)
    finally:
        for proc in procs.values():
            proc.stop()
        subscriber.cancel()
        await asyncio.gather(subscriber, return_exceptions=True)
        await server_runner.cleanup()
        await sink_runner.cleanup()
        await exchange_runner.cleanup()
