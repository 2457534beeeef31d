"""Feed fan-out across several feed servers: the leader's publish → receipt at every SSE subscriber,
with 3 `relay feed-server` processes × N (default 1,000) subscribers each, fed (1) by direct POSTs
to every server, as `[feed_round] publish_urls` does, and (2) through NATS JetStream, as
`[feed_round] nats_urls` + `[feed_server] nats_urls` do, in the same run, by the same servers and
subscribers.

    .venv/bin/python bench/feed_fanout_nats.py [--servers 3] [--subscribers 1000] [--reports 50] [--interval-ms 100]

Processes: a nats-server -js (its own store in a temporary directory, a free port), the feed
servers (each also reads the stream), one subscriber process per server holding raw SSE
connections (bench/feed_fanout.py's, so the CPU figures are the servers'), and this one, the
round leader: it signs every report beforehand with a dealt 3-of-4 committee, then per round stamps
CLOCK_MONOTONIC and either POSTs the report to every server at once or publishes it to JetStream
(awaiting the stream's acknowledgement, as the leader does). Latency = that stamp → the moment the
report's SSE event is complete at a subscriber. The round before it (observe, sign, combine) is
measured by bench/feed_rounds.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# After the sys.path line: the bench runs as a script from a checkout.
import attest  # noqa: E402
from attest.threshold import combine_signatures  # noqa: E402
from relay.devstack import free_port  # noqa: E402
from relay.feeds.jetstream import ReportPublisher, StreamSettings  # noqa: E402
from relay.feeds.report import FeedReport  # noqa: E402
from relay.feeds.signed import SignedReport  # noqa: E402

SUBSCRIBER = ROOT / "bench" / "feed_fanout.py"  # its `--_subscriber` mode: raw sockets on one epoll


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _start_nats(workdir: Path) -> tuple[subprocess.Popen, str, int]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        raise SystemExit("nats-server is missing: make setup installs it (scripts/ensure-nats.sh)")
    port, monitor = free_port(), free_port()
    proc = subprocess.Popen([binary, "-js", "-sd", str(workdir / "jetstream"), "-a", "127.0.0.1", "-p", str(port),
                             "-m", str(monitor)], stdout=subprocess.DEVNULL, stderr=open(workdir / "nats.log", "w"))
    return proc, f"nats://127.0.0.1:{port}", monitor


async def _wait_http(url: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not answer at {url}")
            await asyncio.sleep(0.1)


async def _phase(name: str, publish, reports: list[SignedReport], interval: float, servers: list[dict],
                 nats_pid: int | None,
                 http: aiohttp.ClientSession) -> dict:
    """Publish `reports`, one per interval; return what the subscribers logged for their rounds."""
    pids = [s["proc"].pid for s in servers]
    cpu0 = [_cpu_seconds(p) for p in pids]
    nats0 = _cpu_seconds(nats_pid) if nats_pid else 0.0
    wall0 = time.monotonic()
    sent: dict[int, int] = {}
    publish_ms: list[float] = []
    for report in reports:
        t0 = time.monotonic_ns()
        sent[report.round] = t0
        await publish(report)
        publish_ms.append((time.monotonic_ns() - t0) / 1e6)
        await asyncio.sleep(interval)
    await asyncio.sleep(1.0)  # let the last event reach everyone
    wall = time.monotonic() - wall0
    cpu = [_cpu_seconds(p) - c for p, c in zip(pids, cpu0)]
    dropped = 0
    for s in servers:
        async with http.get(s["url"] + "/health") as resp:
            dropped += (await resp.json())["dropped_subscribers"]
    return {"name": name, "sent": sent, "publish_ms": publish_ms, "server_cpu": cpu, "wall": wall,
            "nats_cpu": (_cpu_seconds(nats_pid) - nats0) if nats_pid else None, "dropped": dropped}


def _summarise(phase: dict, logs: list[dict], subscribers_total: int) -> dict:
    latencies: list[float] = []
    first: dict[int, float] = {}  # per round, the first subscriber to have it: the path without the fan-out
    missing = 0
    for log in logs:
        for round_, t0 in phase["sent"].items():
            t1 = log.get(str(round_))
            if t1 is None:
                missing += 1
            else:
                latencies.append((t1 - t0) / 1e6)
                first[round_] = min(first.get(round_, float("inf")), (t1 - t0) / 1e6)
    reports = len(phase["sent"])
    out = {
        "reports": reports,
        "deliveries": len(latencies),
        "expected_deliveries": reports * subscribers_total,
        "missing": missing,
        "dropped_subscribers": phase["dropped"],
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p90": round(_percentile(latencies, 0.90), 2),
            "p99": round(_percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
        },
        "first_subscriber_ms": {"p50": round(statistics.median(first.values()), 2),
                                "p99": round(_percentile(list(first.values()), 0.99), 2)},
        "leader_publish_ms_p50": round(statistics.median(phase["publish_ms"]), 2),
        "server_cpu_ms_per_report": [round(1000 * c / reports, 2) for c in phase["server_cpu"]],
        "servers_cpu_pct": round(100 * sum(phase["server_cpu"]) / phase["wall"], 1),
    }
    if phase["nats_cpu"] is not None:
        out["nats_server_cpu_ms_per_report"] = round(1000 * phase["nats_cpu"] / reports, 3)
    return out


async def _main(args: argparse.Namespace) -> dict:
    committee, shares = attest.deal(4, 3, epoch=1)
    workdir = Path(tempfile.mkdtemp(prefix="feed-fanout-nats-"))
    committee.save(workdir / "committee.toml")
    (workdir / "eth.csv").write_text("timestamp,price\n1,3000\n")
    nats_proc, nats_url, nats_monitor = _start_nats(workdir)
    stream = StreamSettings((nats_url,), stream="BENCH_FEEDS", subject="bench.feeds")
    servers: list[dict] = []
    subscribers: list[tuple[subprocess.Popen, list[Path]]] = []
    publisher = ReportPublisher(stream, "bench leader")
    total = 2 * args.reports

    def signed(round_: int) -> SignedReport:
        # Signed beforehand: signing (~3 ms) must not sit inside the timed path.
        now = time.time_ns() // 1_000_000 + round_ * int(args.interval_ms)
        report = FeedReport("ETH/USD", round_, 3000_00000000 + round_, 1_000000, 8, 3, now, now)
        digest = report.digest(committee.epoch)
        return SignedReport(report, committee.epoch,
                            combine_signatures([attest.partial_sign(s, digest) for s in shares[:3]]))

    try:
        await _wait_http(f"http://127.0.0.1:{nats_monitor}/healthz?js-enabled-only=true", "nats-server")
        await publisher.wait_ready(10)  # creates the stream before the servers subscribe
        for i in range(args.servers):
            port = free_port()
            config = {
                "chains": {},
                "committee": {"file": "committee.toml"},
                "feeds": {"ETH/USD": {"decimals": 8, "sources": [{"kind": "file", "path": "eth.csv"}]}},
                "feed_round": {"interval_ms": 1000},
                "feed_server": {"listen": f"127.0.0.1:{port}", "max_subscribers": args.subscribers + 10,
                                "history_size": total + 10, "nats_urls": [nats_url],
                                "nats_stream": stream.stream, "nats_subject": stream.subject},
            }
            path = workdir / f"server-{i}.toml"
            path.write_text(tomli_w.dumps(config))
            proc = subprocess.Popen([sys.executable, "-m", "relay.cli", "--log-level", "warning", "feed-server",
                                     "--config", str(path)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=open(workdir / f"server-{i}.log", "w"))
            servers.append({"proc": proc, "port": port, "url": f"http://127.0.0.1:{port}"})
        for s in servers:
            await _wait_http(s["url"] + "/health", "a feed server")
        for i, s in enumerate(servers):
            files = [workdir / f"sub-{i}.{ext}" for ext in ("ready", "stop", "out")]
            child = subprocess.Popen([sys.executable, str(SUBSCRIBER), "--_subscriber", str(s["port"]),
                                      str(args.subscribers), *map(str, files)])
            subscribers.append((child, files))
        deadline = time.monotonic() + 180
        while not all(f[0].exists() for _, f in subscribers):
            if time.monotonic() > deadline or any(c.poll() is not None for c, _ in subscribers):
                raise SystemExit("subscribers failed to connect")
            await asyncio.sleep(0.1)
        reports = [signed(r) for r in range(1, total + 1)]
        interval = args.interval_ms / 1000
        async with aiohttp.ClientSession() as http:
            for s in servers:  # every stream registered on every server
                while True:
                    async with http.get(s["url"] + "/health") as resp:
                        if (await resp.json())["subscribers"] >= args.subscribers:
                            break
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)

            async def post_to_all(report: SignedReport) -> None:
                body = report.to_json()

                async def post(url: str) -> None:
                    async with http.post(url + "/v1/reports", json=body) as resp:
                        result = await resp.json()
                        assert result.get("accepted") or result.get("reason") == "already held", result

                await asyncio.gather(*(post(s["url"]) for s in servers))

            direct = await _phase("direct POST", post_to_all, reports[: args.reports], interval, servers,
                                  None, http)
            via_nats = await _phase("NATS JetStream", publisher.publish, reports[args.reports:], interval, servers,
                                    nats_proc.pid, http)
        for _, files in subscribers:
            files[1].write_text("stop")
        logs: list[dict] = []
        client_cpu = 0.0
        for child, files in subscribers:
            child.wait(120)
            result = json.loads(files[2].read_text())
            client_cpu += result["cpu_s"]
            logs.extend(result["logs"])
    finally:
        await publisher.close()
        for s in servers:
            s["proc"].terminate()
        for s in servers:
            s["proc"].wait(15)
        for child, _ in subscribers:
            if child.poll() is None:
                child.kill()
        nats_proc.terminate()
        nats_proc.wait(15)
        shutil.rmtree(workdir, ignore_errors=True)
    everyone = args.servers * args.subscribers
    return {
        "bench": "feed_fanout_nats", "servers": args.servers, "subscribers_per_server": args.subscribers,
        "interval_ms": args.interval_ms, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "direct_post": _summarise(direct, logs, everyone),
        "nats_jetstream": _summarise(via_nats, logs, everyone),
        "subscriber_processes_cpu_s": round(client_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=1000, help="SSE subscribers per feed server")
    parser.add_argument("--reports", type=int, default=50, help="reports published in each phase")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="time between reports")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_main(args)), indent=2))


if __name__ == "__main__":
    main()
