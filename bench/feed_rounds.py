"""Feed rounds: round start → committee-signed report received at a subscriber, p50/p99.

    .venv/bin/python bench/feed_rounds.py [--sizes 4 7] [--rounds 200] [--interval-ms 150]
                                          [--mode inproc|procs|both] [--sink subscriber|post] [--json out.json]

Each member reads a loopback HTTP exchange and a recording, signs its observation, sends it to the
round's leader; the leader builds the report, collects t partials over HTTP, combines, verifies and
POSTs the signed report to `publish_urls`. With `--sink subscriber` (default) that is a real feed
server (relay/feeds/server/) in this process and the report is timed when an SDK FeedsClient
streaming from it over SSE yields it (verified by the server and again by the client); with
`--sink post`, when a bare POST /v1/reports handler here receives it. Latency = arrival on this
machine's clock − the round's start (round · interval_ms).

- inproc: n FeedNodes in ONE process (one event loop), each with its own aiohttp server: every
  member's signature checks run one after another, so this is a pessimistic bound on one core.
- procs: n `relay attester` processes (chains = {}, the [feeds] table only), as in production;
  members check proposals in parallel, up to the number of cores.
The "bare" row is the cryptography alone in this process: attest.combine of t partials (one
optimistic verification) plus the SignedReport verification that the leader does before publishing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tomli_w  # noqa: E402
from aiohttp import web  # noqa: E402

import attest  # noqa: E402
from relay.feeds.config import FeedRoundSection  # noqa: E402
from relay.devstack import free_port, wait_http  # noqa: E402
from relay.feeds import FeedReport, parse_feeds  # noqa: E402
from relay.feeds.node import FeedNode  # noqa: E402
from relay.feeds.signed import SignedReport  # noqa: E402
from relay.lifecycle import own_process, settle_heap  # noqa: E402
from relay.log import configure_logging  # noqa: E402
from relay.processes import ChildProcess  # noqa: E402

WARMUP_ROUNDS = 3


def threshold(n: int) -> int:
    return n - (n - 1) // 3  # tolerates f = ⌊(n−1)/3⌋ faulty members: 3 of 4, 5 of 7


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def serve(app: web.Application, port: int | None = None) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


class Sink:
    """Where latency is measured. kind "post": a bare POST /v1/reports endpoint (the leader's side of
    publishing); kind "subscriber": the real feed server (relay/feeds/server/) with an SDK
    FeedsClient streaming from it over SSE, so a report is timed after the server verified and fanned
    it out and the client verified it again."""

    def __init__(self, kind: str, interval_ms: int, want: int) -> None:
        self.kind = kind
        self.interval_ms = interval_ms
        self.want = want
        self.latency_ms: dict[int, float] = {}  # round -> arrival − round start
        self.done = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._stream: asyncio.Task | None = None

    def record(self, signed: SignedReport) -> None:
        arrived = time.time() * 1000
        self.latency_ms.setdefault(signed.round, arrived - signed.round * self.interval_ms)
        if len(self.latency_ms) >= self.want:
            self.done.set()

    async def start(self, committee, feed) -> str:
        if self.kind == "post":
            async def reports(request: web.Request) -> web.Response:
                self.record(SignedReport.from_json(await request.json()))
                return web.json_response({"accepted": True})

            app = web.Application()
            app.router.add_post("/v1/reports", reports)
            self._runner, url = await serve(app)
            return url
        from relay.feeds.client import FeedsClient
        from relay.feeds.server import FeedServer

        server = FeedServer(committee, {feed.id: feed})
        self._runner, url = await serve(server.app)

        async def subscribe() -> None:
            async with FeedsClient(url, committee) as client:
                async for update in client.stream([feed.id]):
                    if isinstance(update, SignedReport):
                        self.record(update)

        self._stream = asyncio.create_task(subscribe())
        return url

    def reset(self) -> None:
        self.latency_ms.clear()

    async def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            await asyncio.gather(self._stream, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()


def exchange_app() -> web.Application:
    async def spot(request: web.Request) -> web.Response:
        return web.json_response({"data": {"amount": "3001.25"}})

    app = web.Application()
    app.router.add_get("/spot", spot)
    return app


def feed_table(exchange: str, recording: Path) -> dict:
    return {"decimals": 8, "tolerance_bps": 50, "sources": [
        {"kind": "http_json", "name": "exchange", "url": f"{exchange}/spot", "price_path": "data.amount"},
        {"kind": "file", "name": "recorded", "path": str(recording), "max_age_s": 3600},
    ]}


async def run_inproc(n: int, rounds: int, interval_ms: int, exchange: str, recording: Path,
                     sink_kind: str) -> tuple[dict, int]:
    ports = [free_port() for _ in range(n)]
    committee, shares = attest.deal(n, threshold(n), 1, [f"http://127.0.0.1:{p}" for p in ports], random.Random(n))
    feed = parse_feeds({"feeds": {"ETH/USD": feed_table(exchange, recording)}})["ETH/USD"]
    sink = Sink(sink_kind, interval_ms, rounds + WARMUP_ROUNDS)
    sink_url = await sink.start(committee, feed)
    settings = FeedRoundSection(interval_ms=interval_ms, collect_ms=20, leader_timeout_ms=250, publish_urls=[sink_url])
    stop = asyncio.Event()
    runners, tasks = [], []
    try:
        for member, port in zip(committee.indices, ports):
            node = FeedNode(member, committee, shares[member - 1], {feed.id: feed}, settings)
            app = web.Application()
            app.add_routes(node.routes())
            runners.append((await serve(app, port))[0])
            tasks.append(asyncio.create_task(node.run(stop)))
        settle_heap()  # as `relay attester` does once started
        await asyncio.wait_for(sink.done.wait(), (rounds + WARMUP_ROUNDS) * interval_ms / 1000 * 2 + 30)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for runner in runners:
            await runner.cleanup()
        await sink.stop()
    return sink.latency_ms, committee.t


async def run_procs(n: int, rounds: int, interval_ms: int, exchange: str, recording: Path, root: Path,
                    sink_kind: str) -> tuple[dict, int]:
    from attest.dealer import deal_to_directory
    from attest.keystore import generate_key_file

    root.mkdir(parents=True)
    endpoints = [f"http://127.0.0.1:{free_port()}" for _ in range(n)]
    committee = deal_to_directory(root / "committee", n, threshold(n), 1, generate_key_file(root / "committee.key"),
                                  endpoints)
    sink = Sink(sink_kind, interval_ms, rounds + WARMUP_ROUNDS)
    sink_url = await sink.start(committee, parse_feeds({"feeds": {"ETH/USD": feed_table(exchange, recording)}})["ETH/USD"])
    config = {
        "chains": {},
        "committee": {"file": "committee/committee.toml", "share": "committee/share-{index}.json",
                      "key_file": "committee.key"},
        "attester": {"db": "attester-{index}.db"},
        "feed_round": {"interval_ms": interval_ms, "collect_ms": 20, "leader_timeout_ms": 250, "publish_urls": [sink_url]},
        "feeds": {"ETH/USD": feed_table(exchange, recording)},
    }
    (root / "config.toml").write_text(tomli_w.dumps(config))
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": os.environ.get("TESSERA_LOG_LEVEL", "warning")}
    procs = []
    try:
        for index in committee.indices:
            proc = ChildProcess(f"attester-{index}", [sys.executable, "-m", "relay.cli", "attester", "--index", str(index),
                                "--config", str(root / "config.toml")], root / f"attester-{index}.log", env=env)
            proc.start()
            procs.append(proc)
        await asyncio.gather(*(wait_http(f"{endpoints[i]}/health", p, 60) for i, p in enumerate(procs)))
        settle_heap()  # this process is the feed server + subscriber: as `relay feed-server` does
        sink.reset()  # rounds while members were still starting do not count
        await asyncio.wait_for(sink.done.wait(), (rounds + WARMUP_ROUNDS) * interval_ms / 1000 * 2 + 30)
    finally:
        for proc in procs:
            proc.stop()
        await sink.stop()
    return sink.latency_ms, committee.t


def bare_cost(n: int, iterations: int = 100) -> float:
    """Median ms of attest.combine(t partials) + SignedReport.verify, the leader's cryptographic floor."""
    committee, shares = attest.deal(n, threshold(n), 1, rng=random.Random(99))
    samples = []
    for i in range(iterations):
        report = FeedReport("ETH/USD", i, 300_125_000_000, 0, 8, n, 1_800_000_000_000, 1_800_000_000_100 + i)
        digest = report.digest(committee.epoch)
        partials = [attest.partial_sign(s, digest) for s in shares[: committee.t]]
        start = time.perf_counter()
        result = attest.combine(committee, digest, partials)
        assert SignedReport(report, committee.epoch, result.signature).verify(committee)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def summarize(latency_ms: dict[int, float], rounds: int) -> dict:
    ordered = [latency_ms[r] for r in sorted(latency_ms)][WARMUP_ROUNDS:]
    first, last = (min(latency_ms), max(latency_ms)) if latency_ms else (0, -1)
    return {
        "rounds": len(ordered),
        "missed": max(0, (last - first + 1) - len(latency_ms)),  # rounds in the span with no report
        "p50_ms": statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": percentile(ordered, 99) if ordered else float("nan"),
        "max_ms": max(ordered) if ordered else float("nan"),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--interval-ms", type=int, default=150)
    parser.add_argument("--mode", choices=["inproc", "procs", "both"], default="both")
    parser.add_argument("--sink", choices=["subscriber", "post"], default="subscriber",
                        help="time reports at an SSE subscriber of a real feed server (default) or at a bare POST sink")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (procs: the attester logs)")
    args = parser.parse_args()
    configure_logging(level="error")
    own_process()
    exchange_runner, exchange = await serve(exchange_app())
    results = []
    tmp = tempfile.mkdtemp(prefix="feed-bench-")
    try:
        recording = Path(tmp) / "eth.jsonl"
        recording.write_text(json.dumps({"timestamp": 1, "price": "3001.30"}) + "\n")
        modes = ["inproc", "procs"] if args.mode == "both" else [args.mode]
        for n in args.sizes:
            bare = bare_cost(n)
            for mode in modes:
                if mode == "inproc":
                    latency, t = await run_inproc(n, args.rounds, args.interval_ms, exchange, recording, args.sink)
                else:
                    latency, t = await run_procs(n, args.rounds, args.interval_ms, exchange, recording,
                                                 Path(tmp) / f"procs-{n}", args.sink)
                results.append({"n": n, "t": t, "mode": mode, "sink": args.sink, "interval_ms": args.interval_ms,
                                "bare_combine_verify_ms": bare, **summarize(latency, args.rounds)})
                print(f"  done: n={n} {mode}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    await exchange_runner.cleanup()
    where = "an SSE subscriber of a feed server" if args.sink == "subscriber" else "a POST sink"
    print(f"\nround start → signed report at {where} (cores: {os.cpu_count()}, interval {args.interval_ms} ms)")
    print(f"{'n':>3} {'t':>3} {'mode':>7} {'rounds':>7} {'missed':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'bare ms':>8}")
    for r in results:
        print(f"{r['n']:>3} {r['t']:>3} {r['mode']:>7} {r['rounds']:>7} {r['missed']:>7} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['bare_combine_verify_ms']:>8.2f}")
    print("bare = attest.combine of t partials + SignedReport.verify (the leader's crypto floor), median")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
