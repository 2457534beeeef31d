"""Three real `relay feed-server` processes fed by one NATS JetStream stream (a real nats-server,
tests/support/nats.py), 300 SSE subscribers through the SDK spread over them. One server is
SIGKILLed mid-stream: its subscribers resume on the other two with no report lost or duplicated.
A forged report on the stream is refused by every server. A fourth server added after the last
round catches up from the stream and serves the same history."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import nats
import pytest
import tomli_w

from relay.devstack import free_port, wait_http
from relay.feeds.client import FeedsClient, GapEvent, ReportRejectedEvent
from relay.feeds.jetstream import ReportPublisher, report_subject
from relay.feeds.signed import SignedReport
from relay.processes import ChildProcess
from tests.support.committee import deal
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

SUBSCRIBERS = 300
ROUNDS = 30
KILL_AFTER = 10  # rounds published before the kill
FORGED_AT = 15  # a forged report of this round goes on the stream just before the real one


def write_config(tmp_path: Path, name: str, port: int, stream) -> Path:
    source = [{"kind": "file", "path": "eth.csv"}]
    config = {
        "chains": {},
        "committee": {"file": "committee.toml"},
        "feeds": {"ETH/USD": {"description": "Ether", "decimals": 8, "sources": source}},
        "feed_server": {"listen": f"127.0.0.1:{port}", "stale_after_s": 60, "keepalive_s": 1.0,
                        "nats_urls": list(stream.urls), "nats_stream": stream.stream, "nats_subject": stream.subject},
    }
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def start_server(tmp_path: Path, name: str, stream) -> tuple[ChildProcess, str]:
    port = free_port()
    path = write_config(tmp_path, name, port, stream)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = ChildProcess(name, [sys.executable, "-m", "relay.cli", "feed-server", "--config", str(path)],
                        tmp_path / f"{name}.log", env=env)
    proc.start()
    return proc, f"http://127.0.0.1:{port}"


async def health(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url + "/health") as resp:
        return await resp.json()


async def history(http: aiohttp.ClientSession, url: str) -> list[dict]:
    async with http.get(url + "/v1/feeds/ETH/USD/history?limit=1000") as resp:
        return (await resp.json())["reports"]


async def test_three_servers_on_jetstream_survive_one_killed_under_300_subscribers(nats_server, tmp_path):
    dealt = deal(n=4, t=3, epoch=5)
    dealt.committee.save(tmp_path / "committee.toml")
    (tmp_path / "eth.csv").write_text("timestamp,price\n1,3000\n")
    stream = nats_server.stream_settings()
    reports = [dealt.sign("ETH/USD", r, price=3000_00000000 + r) for r in range(1, ROUNDS + 1)]
    forged = deal(n=4, t=3, epoch=5).sign("ETH/USD", FORGED_AT, price=1)  # right epoch, wrong key

    servers = [start_server(tmp_path, f"feed-server-{i}", stream) for i in range(3)]
    late: ChildProcess | None = None
    clients: list[FeedsClient] = []
    readers: list[asyncio.Task] = []
    publisher = ReportPublisher(stream)
    raw = None
    try:
        for proc, url in servers:
            await wait_http(url + "/health", proc)
        urls = [url for _, url in servers]
        await publisher.wait_ready(10)
        raw = await nats.connect(nats_server.url)

        # 300 SDK subscribers, each given the three servers starting from a different one.
        items: list[list] = [[] for _ in range(SUBSCRIBERS)]
        for i in range(SUBSCRIBERS):
            client = FeedsClient(urls[i % 3:] + urls[:i % 3], dealt.committee, reconnect_base_s=0.1,
                                 reconnect_cap_s=1.0, timeout_s=10)
            clients.append(client)

            async def read(client=client, into=items[i]):
                async for item in client.stream(["ETH/USD"], since={"ETH/USD": 0}):
                    into.append(item)

            readers.append(asyncio.create_task(read()))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def subscribers() -> list[int]:
                return [(await health(http, url))["subscribers"] for url in urls]

            async def all_subscribed() -> bool:
                return sum(await subscribers()) == SUBSCRIBERS

            await wait_for(all_subscribed, timeout=60, interval=0.2, what=f"{SUBSCRIBERS} subscribers")
            assert await subscribers() == [SUBSCRIBERS // 3] * 3

            def taken(i: int) -> list[int]:
                return [x.round for x in items[i] if isinstance(x, SignedReport)]

            for report in reports[:KILL_AFTER]:
                await publisher.publish(report)
                await asyncio.sleep(0.05)
            await wait_for(lambda: all(len(taken(i)) >= 3 for i in range(SUBSCRIBERS)), timeout=60)

            # SIGKILL the server the first third of the subscribers started on: no goodbye to anyone.
            killed_proc, killed_url = servers[0]
            os.kill(killed_proc.pid, signal.SIGKILL)
            for report in reports[KILL_AFTER:]:
                if report.round == FORGED_AT:
                    await raw.jetstream().publish(report_subject(stream.subject, "ETH/USD"),
                                                  json.dumps(forged.to_json()).encode(),
                                                  headers={"Nats-Msg-Id": "forged"})
                await publisher.publish(report)
                await asyncio.sleep(0.05)
            await wait_for(lambda: all(len(taken(i)) >= ROUNDS for i in range(SUBSCRIBERS)), timeout=120)
            await asyncio.sleep(0.5)  # anything sent twice would have arrived by now

            for i in range(SUBSCRIBERS):
                assert taken(i) == list(range(1, ROUNDS + 1)), (i, taken(i))  # in order, none lost, none twice
                assert not [x for x in items[i] if isinstance(x, (GapEvent, ReportRejectedEvent))], i
            moved = [c for i, c in enumerate(clients) if urls[i % 3] == killed_url]
            assert len(moved) == SUBSCRIBERS // 3 and all(c.failovers >= 1 for c in moved)
            alive = [url for url in urls if url != killed_url]
            assert sum([(await health(http, url))["subscribers"] for url in alive]) == SUBSCRIBERS

            # Every live server holds the real round 15 (the forged one was refused) and the same history.
            expected = [r.to_json() for r in reports]
            for url in alive:
                assert await history(http, url) == expected
                async with http.get(url + "/metrics") as resp:
                    assert 'tessera_feed_reports_total{result="rejected"} 1.0' in await resp.text()

            # A server added after the last round catches up from the stream.
            late, late_url = start_server(tmp_path, "feed-server-late", stream)
            await wait_http(late_url + "/health", late)
            async def caught_up() -> bool:
                return (await health(http, late_url))["nats"]["caught_up"]

            await wait_for(caught_up, timeout=30, what="the late server to catch up from the stream")
            assert await history(http, late_url) == expected
            async with FeedsClient(late_url, dealt.committee) as fresh:
                got = []

                async def replayed() -> None:
                    async for item in fresh.stream(["ETH/USD"], since={"ETH/USD": 0}):
                        got.append(item.round)
                        if len(got) == ROUNDS:
                            return

                await asyncio.wait_for(replayed(), 30)
                assert got == list(range(1, ROUNDS + 1))
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for client in clients:
            await client.close()
        await publisher.close()
        if raw is not None:
            await raw.close()
        for proc, _ in servers:
            proc.stop()
        if late is not None:
            late.stop()


async def test_attester_rounds_reach_feed_servers_through_jetstream(nats_server, tmp_path):
    """4 `relay attester` processes (t = 3) run feed rounds with only `[feed_round] nats_urls` (no
    publish_urls): the leaders' reports reach two `relay feed-server` processes through the stream,
    which hold the same rounds, and an SDK client given both servers streams them verified."""
    from attest.dealer import deal_to_directory
    from attest.keystore import generate_key_file

    stream = nats_server.stream_settings()
    keys = tmp_path / "keys"
    keys.mkdir()
    endpoints = [f"http://127.0.0.1:{free_port()}" for _ in range(4)]
    committee = deal_to_directory(keys / "committee", 4, 3, 5, generate_key_file(keys / "committee.key"), endpoints)
    (tmp_path / "eth.csv").write_text("timestamp,price\n1,3001.10\n2,3001.30\n")
    nats_keys = {"nats_urls": list(stream.urls), "nats_stream": stream.stream, "nats_subject": stream.subject}
    config = {
        "chains": {},
        "committee": {"file": "keys/committee/committee.toml", "share": "keys/committee/share-{index}.json",
                      "key_file": "keys/committee.key"},
        "attester": {"db": "attester-{index}.db"},
        # Generous round timings: a loaded CI machine must not make every round miss its leader timeout.
        "feed_round": {"interval_ms": 500, "collect_ms": 50, "leader_timeout_ms": 400, **nats_keys},
        "feeds": {"ETH/USD": {"decimals": 8, "sources": [
            {"kind": "file", "name": "recorded", "path": "eth.csv", "max_age_s": 3600}]}},
    }
    path = tmp_path / "attesters.toml"
    path.write_text(tomli_w.dumps(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    attesters = [ChildProcess(f"attester-{i}", [sys.executable, "-m", "relay.cli", "attester", "--index", str(i),
                                                "--config", str(path)], tmp_path / f"attester-{i}.log", env=env)
                 for i in committee.indices]
    committee.save(tmp_path / "committee.toml")  # the feed servers' [committee] file
    servers = [start_server(tmp_path, f"feed-server-{i}", stream) for i in range(2)]
    try:
        for proc, url in servers:
            await wait_http(url + "/health", proc)
        for proc in attesters:
            proc.start()
        urls = [url for _, url in servers]
        async with FeedsClient(urls, committee) as client, aiohttp.ClientSession() as http:
            got: list[SignedReport] = []

            async def four_reports() -> None:
                async for item in client.stream(["ETH/USD"]):
                    if isinstance(item, SignedReport):
                        got.append(item)
                        if len(got) == 4:
                            return

            await asyncio.wait_for(four_reports(), 60)
            assert all(r.verify(committee) and r.report.price in (300_110_000_000, 300_130_000_000) for r in got)
            assert [r.round for r in got] == sorted({r.round for r in got})

            async def same_history() -> bool:
                histories = [await history(http, url) for url in urls]
                return len(histories[0]) >= 4 and histories[0] == histories[1]

            await wait_for(same_history, timeout=10, what="both servers to hold the same reports")
    finally:
        for proc in attesters:
            proc.stop()
        for proc, _ in servers:
            proc.stop()
