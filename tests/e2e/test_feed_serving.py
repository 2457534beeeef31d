"""The real `relay feed-server` process with a dealt 3-of-4 committee: reports signed in the test are
POSTed as the round leader would, and SDK clients read them over SSE and WebSocket; fewer than t
partials publish nothing and the streams say stale; the process is killed and restarted under the
clients, which resume without loss or duplicates."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import tomli_w

import attest
from attest.threshold import combine_signatures
from relay.devstack import free_port, wait_http
from relay.feeds.client import FeedsClient, LiveEvent, StaleEvent
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport
from relay.processes import ChildProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]


def sign(shares, committee, feed_id: str, round_: int, price: int, signers: int | None = None) -> SignedReport:
    now = time.time_ns() // 1_000_000
    report = FeedReport(feed_id, round_, price, price // 10_000, 8, 4, now - 30, now)
    digest = report.digest(committee.epoch)
    partials = [attest.partial_sign(s, digest) for s in shares[: signers or committee.t]]
    return SignedReport(report, committee.epoch, combine_signatures(partials))


@pytest.fixture
def setup(tmp_path):
    committee, shares = attest.deal(4, 3, epoch=3)
    committee.save(tmp_path / "committee.toml")
    (tmp_path / "eth.csv").write_text("timestamp,price\n1,3000\n")
    port = free_port()
    source = [{"kind": "file", "path": "eth.csv"}]
    config = {
        "chains": {},
        "committee": {"file": "committee.toml"},
        "feeds": {"ETH/USD": {"description": "Ether", "decimals": 8, "sources": source},
                  "BTC/USD": {"description": "Bitcoin", "decimals": 8, "sources": source}},
        "feed_round": {"interval_ms": 300},  # stale after 3 × 300 ms
        "feed_server": {"listen": f"127.0.0.1:{port}", "db": "feeds.db", "history_size": 100, "keepalive_s": 1.0},
    }
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config))
    return committee, shares, path, f"http://127.0.0.1:{port}"


def feed_server(path: Path, tmp_path: Path) -> ChildProcess:
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json"}
    return ChildProcess("feed-server", [sys.executable, "-m", "relay.cli", "feed-server", "--config", str(path)],
                        tmp_path / "feed-server.log", env=env)


async def post(http, url, report) -> tuple[int, dict]:
    async with http.post(url + "/v1/reports", json=report.to_json()) as resp:
        return resp.status, await resp.json()


async def collect(stream, into: list, stop_when) -> None:
    async for item in stream:
        into.append(item)
        if stop_when(into):
            return


def reports_of(items, feed="ETH/USD"):
    return [i.round for i in items if isinstance(i, SignedReport) and i.feed_id == feed]


async def test_feed_server_process_end_to_end(setup, tmp_path):
    committee, shares, path, url = setup
    proc = feed_server(path, tmp_path)
    proc.start()
    try:
        await wait_http(url + "/health", proc)
        async with aiohttp.ClientSession() as http, \
                FeedsClient(url, committee, reconnect_base_s=0.05, reconnect_cap_s=0.3) as sse_client, \
                FeedsClient(url, committee, reconnect_base_s=0.05, reconnect_cap_s=0.3) as ws_client:
            assert (await post(http, url, sign(shares, committee, "ETH/USD", 1, 3000_00000000)))[1]["accepted"]
            sse_items: list = []
            ws_items: list = []
            sse = asyncio.create_task(collect(sse_client.stream(["ETH/USD", "BTC/USD"], transport="sse"), sse_items,
                                              lambda xs: 12 in reports_of(xs)))
            ws = asyncio.create_task(collect(ws_client.stream(["ETH/USD", "BTC/USD"], transport="ws"), ws_items,
                                             lambda xs: 12 in reports_of(xs)))
            await wait_for(lambda: 1 in reports_of(sse_items) and 1 in reports_of(ws_items), timeout=15.0)

            # Rounds 2..5 flow to both transports, each verified by the SDK against the committee key.
            for r in range(2, 6):
                assert (await post(http, url, sign(shares, committee, "ETH/USD", r, 3000_00000000 + r)))[1]["accepted"]
            assert (await post(http, url, sign(shares, committee, "BTC/USD", 1, 90000_00000000)))[1]["accepted"]
            await wait_for(lambda: 5 in reports_of(sse_items) and 5 in reports_of(ws_items), timeout=15.0)
            latest = await sse_client.latest("ETH/USD")
            assert latest.round == 5 and latest.verify(committee)

            # Only t-1 = 2 attesters up: what they can combine is not the committee's signature, so
            # nothing is published and, after 3 round intervals, both streams say the feeds are stale.
            weak = sign(shares, committee, "ETH/USD", 6, 3000_00000000, signers=2)
            status, body = await post(http, url, weak)
            assert status == 400 and "signature does not verify" in body["reason"]
            await wait_for(lambda: any(isinstance(i, StaleEvent) and i.feed_id == "ETH/USD" for i in sse_items)
                           and any(isinstance(i, StaleEvent) and i.feed_id == "ETH/USD" for i in ws_items), timeout=15.0)
            assert 6 not in reports_of(sse_items) and 6 not in reports_of(ws_items)
            async with http.get(url + "/v1/feeds") as resp:
                assert {f["id"]: f["status"] for f in (await resp.json())["feeds"]}["ETH/USD"] == "stale"

            # The committee is back: live again.
            assert (await post(http, url, sign(shares, committee, "ETH/USD", 7, 3000_00000007)))[1]["accepted"]
            await wait_for(lambda: 7 in reports_of(sse_items) and 7 in reports_of(ws_items), timeout=15.0)
            for items in (sse_items, ws_items):
                kinds = [(type(i).__name__, getattr(i, "round", None)) for i in items if getattr(i, "feed_id", "") == "ETH/USD"]
                assert kinds.index(("LiveEvent", 7)) == kinds.index(("SignedReport", 7)) - 1

            # Kill the server process under the clients and start it again (same config, same history db).
            os.kill(proc.pid, signal.SIGKILL)  # no goodbye to the subscribers
            proc.stop()
            proc = feed_server(path, tmp_path)
            proc.start()
            await wait_http(url + "/health", proc)
            for r in range(8, 13):
                assert (await post(http, url, sign(shares, committee, "ETH/USD", r, 3000_00000000 + r)))[1]["accepted"]
            await asyncio.wait_for(asyncio.gather(sse, ws), 20)
            for items, client in ((sse_items, sse_client), (ws_items, ws_client)):
                assert reports_of(items) == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]  # in order, nothing twice
                assert reports_of(items, "BTC/USD") == [1]
                assert client.reconnects >= 1
            async with http.get(url + "/v1/feeds/ETH/USD/history?limit=100") as resp:
                assert [r["round"] for r in (await resp.json())["reports"]] == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    finally:
        proc.stop()


def test_feed_server_refuses_config_without_feeds(tmp_path):
    committee, _ = attest.deal(2, 2, epoch=1)
    committee.save(tmp_path / "committee.toml")
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps({"chains": {}, "committee": {"file": "committee.toml"}}))
    run = subprocess.run([sys.executable, "-m", "relay.cli", "feed-server", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 1 and "[feeds" in run.stderr


# --- the whole pipeline: attester processes run rounds, the leader POSTs to the feed server ----------


async def test_attester_rounds_to_sdk_streams(tmp_path):
    """4 `relay attester` processes (t = 3) run feed rounds and publish to the `relay feed-server`
    process; SDK clients stream over SSE and WS. Two attesters killed: nothing is published and both
    streams say stale; one back: live again."""
    from aiohttp import web

    from attest.dealer import deal_to_directory
    from attest.keystore import generate_key_file

    async def price(request: web.Request) -> web.Response:
        return web.json_response({"data": {"amount": "3001.00"}})

    exchange = web.Application()
    exchange.router.add_get("/spot", price)
    exchange_runner = web.AppRunner(exchange, access_log=None)
    await exchange_runner.setup()
    exchange_port = free_port()
    await web.TCPSite(exchange_runner, "127.0.0.1", exchange_port).start()

    keys = tmp_path / "keys"
    keys.mkdir()
    endpoints = [f"http://127.0.0.1:{free_port()}" for _ in range(4)]
    committee = deal_to_directory(keys / "committee", 4, 3, 5, generate_key_file(keys / "committee.key"), endpoints)
    (tmp_path / "eth.csv").write_text("timestamp,price\n1,3001.10\n2,3001.30\n")
    server_port = free_port()
    url = f"http://127.0.0.1:{server_port}"
    config = {
        "chains": {},
        "committee": {"file": "keys/committee/committee.toml", "share": "keys/committee/share-{index}.json",
                      "key_file": "keys/committee.key"},
        "attester": {"db": "attester-{index}.db"},
        "feed_round": {"interval_ms": 300, "collect_ms": 30, "leader_timeout_ms": 120, "publish_urls": [url]},
        "feed_server": {"listen": f"127.0.0.1:{server_port}", "keepalive_s": 1.0},
        "feeds": {"ETH/USD": {"decimals": 8, "tolerance_bps": 50, "sources": [
            {"kind": "http_json", "name": "exchange", "url": f"http://127.0.0.1:{exchange_port}/spot",
             "price_path": "data.amount"},
            {"kind": "file", "name": "recorded", "path": "eth.csv", "max_age_s": 3600},
        ]}},
    }
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config))
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json"}
    procs: dict[int, ChildProcess] = {}

    def attester(index: int) -> ChildProcess:
        proc = ChildProcess(f"attester-{index}", [sys.executable, "-m", "relay.cli", "attester", "--index", str(index),
                                                 "--config", str(path)],
                            tmp_path / "logs" / f"attester-{index}-{len(procs)}.log", env=env)
        proc.start()
        procs[index] = proc
        return proc

    server = feed_server(path, tmp_path)
    server.start()
    try:
        await wait_http(url + "/health", server)
        for index in committee.indices:
            attester(index)
        await asyncio.gather(*(wait_http(f"{committee.member(i).endpoint}/health", procs[i]) for i in committee.indices))
        async with FeedsClient(url, committee) as sse_client, FeedsClient(url, committee) as ws_client:
            sse_items: list = []
            ws_items: list = []
            tasks = [asyncio.create_task(collect(c.stream(["ETH/USD"], transport=t), items, lambda xs: False))
                     for c, t, items in ((sse_client, "sse", sse_items), (ws_client, "ws", ws_items))]
            await wait_for(lambda: len(reports_of(sse_items)) >= 4 and len(reports_of(ws_items)) >= 4, 40)
            for items in (sse_items, ws_items):
                reports = [i for i in items if isinstance(i, SignedReport)]
                assert all(r.verify(committee) and r.report.price == 300_100_000_000 for r in reports)
                rounds = [r.round for r in reports]
                assert rounds == sorted(set(rounds))

            # Two of four down (t = 3): no report is published and both streams say stale.
            for index in (1, 2):
                os.kill(procs[index].pid, signal.SIGKILL)
            await wait_for(lambda: any(isinstance(i, StaleEvent) for i in sse_items)
                           and any(isinstance(i, StaleEvent) for i in ws_items), 20)
            last = max(reports_of(sse_items))
            await asyncio.sleep(1.0)
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/v1/feeds") as resp:
                    feed = (await resp.json())["feeds"][0]
            assert feed["status"] == "stale" and feed["latest_round"] == last

            # One back: three members, rounds resume, the streams say live, then the report.
            procs[1].stop()
            attester(1)
            await wait_http(f"{committee.member(1).endpoint}/health", procs[1])
            await wait_for(lambda: any(isinstance(i, LiveEvent) for i in sse_items)
                           and any(isinstance(i, LiveEvent) for i in ws_items), 30)
            await wait_for(lambda: max(reports_of(sse_items)) > last and max(reports_of(ws_items)) > last, 30)
            for task in tasks:
                task.cancel()
    finally:
        for proc in procs.values():
            proc.stop()
        server.stop()
        await exchange_runner.cleanup()


async def test_devstack_start_feed_server(setup, tmp_path):
    """Stack.start_feed_server on a config without chains (the localnet part of Stack is not needed)."""
    from relay.devstack import Stack
    from relay.processes import ChildProcess

    class ChildrenOnly:
        """The part of a Localnet a Stack uses to start its children, without any chain."""

        state_dir = tmp_path

        def spawn(self, name, argv, env=None, health_url=None):
            child = ChildProcess(name=name, argv=argv, log_path=tmp_path / "logs" / f"{name}.log", env=env,
                                 health_url=health_url)
            child.start()
            return child

    committee, shares, path, _ = setup
    stack = Stack(net=ChildrenOnly(), config_path=path)
    (tmp_path / "logs").mkdir(exist_ok=True)
    try:
        await stack.start_feed_server(history_size=5)
        url = stack.feed_server_url()
        async with aiohttp.ClientSession() as http:
            assert (await post(http, url, sign(shares, committee, "ETH/USD", 1, 3000_00000000)))[1]["accepted"]
        async with FeedsClient(url, committee) as feeds:
            assert (await feeds.latest("ETH/USD")).round == 1
        # A restart keeps the port and the history.
        stack.feed_servers["main"].stop()
        await stack.start_feed_server()
        assert stack.feed_server_url() == url
        async with FeedsClient(url, committee) as feeds:
            assert (await feeds.latest("ETH/USD")).round == 1
    finally:
        stack.stop_all()
