"""Feed server fan-out: delivery latency from POST /v1/reports to receipt at every SSE subscriber, and
the server's CPU, for 1 subscriber and for N (default 1,000) in the same run.

    .venv/bin/python bench/feed_fanout.py [--subscribers 1000] [--reports 50] [--interval-ms 100]

Three kinds of process: the real `relay feed-server` (CLI, as an operator runs it), one or more
subscriber processes holding raw SSE connections (so the CPU figure is the server's alone), and this
one, which signs the reports with a dealt 3-of-4 committee beforehand and POSTs them as the round
leader does. Times are CLOCK_MONOTONIC, shared by the processes on one machine. Server CPU comes from
/proc/<pid>/stat (utime + stime) over each publishing phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import socket
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
from relay.feeds.report import FeedReport  # noqa: E402
from relay.feeds.server.events import parse_event_id  # noqa: E402
from relay.feeds.signed import SignedReport  # noqa: E402
from relay.feeds.sse import SseDecoder  # noqa: E402


# --- subscriber process ------------------------------------------------------------------------


def _subscribe(port: int, count: int, ready_file: Path, stop_file: Path, out: Path) -> None:
    """Raw sockets on one epoll, no event-loop framework: the receiving side should add as little
    as it can to the measured latency. Each read is stamped when its bytes arrive and kept; the
    events are parsed after the run (relay.feeds.sse), each stamped with the read that completed it."""
    request = b"GET /v1/stream?ids=ETH/USD HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
    socks: dict[int, socket.socket] = {}
    reads: dict[int, list[tuple[int, bytes]]] = {}
    for _ in range(count):
        for attempt in range(50):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                time.sleep(0.05 * (attempt + 1))
        else:
            raise SystemExit("cannot connect to the feed server")
        sock.sendall(request)
        head = sock.recv(4096)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise SystemExit(f"subscription refused: {head[:200]!r}")
        sock.setblocking(False)
        socks[sock.fileno()] = sock
        reads[sock.fileno()] = []
    poller = select.epoll()
    for fd in socks:
        poller.register(fd, select.EPOLLIN)
    ready_file.write_text(str(count))
    cpu0 = time.process_time()
    while not stop_file.exists():
        for fd, _ in poller.poll(0.05):
            try:
                data = socks[fd].recv(65536)
            except BlockingIOError:
                continue
            now = time.monotonic_ns()
            if not data:
                poller.unregister(fd)
                continue
            reads[fd].append((now, data))
    cpu_s = time.process_time() - cpu0
    out.write_text(json.dumps({"cpu_s": cpu_s, "logs": [_arrivals(r) for r in reads.values()]}))


def _arrivals(reads: list[tuple[int, bytes]]) -> dict[str, int]:
    """Round -> when its report event was complete. The body is HTTP/1.1 chunked: the decoder reads each
    chunk-size line as a field it does not know and the CRLF closing a chunk as an empty line, both of
    which the SSE rules ignore."""
    decoder = SseDecoder()
    received: dict[str, int] = {}
    for stamp, data in reads:
        for event in decoder.feed(data):
            parsed = parse_event_id(event.id) if event.event == "report" and event.id else None
            if parsed is not None and parsed[0] == "ETH/USD":
                received.setdefault(str(parsed[1]), stamp)
    return received


# --- publisher / driver ------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fanout(metrics: str) -> tuple[float, float]:
    """(sum, count) of the server's own time to hand each event to every subscriber."""
    total = float(re.search(r"^tessera_feed_fanout_seconds_sum (\S+)", metrics, re.M).group(1))
    count = float(re.search(r"^tessera_feed_fanout_seconds_count (\S+)", metrics, re.M).group(1))
    return total, count


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _phase(url: str, port: int, server_pid: int, subscribers: int, reports: list, interval: float,
                 workdir: Path, procs: int, first_round: int) -> dict:
    tag = f"{subscribers}-{first_round}"
    children = []
    per = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
    per = [n for n in per if n]
    for i, n in enumerate(per):
        files = [workdir / f"{tag}-{i}.{ext}" for ext in ("ready", "stop", "out")]
        child = subprocess.Popen([sys.executable, __file__, "--_subscriber", str(port), str(n), *map(str, files)])
        children.append((child, files))
    deadline = time.monotonic() + 120
    while not all(f[0].exists() for _, f in children):
        if time.monotonic() > deadline or any(c.poll() is not None for c, _ in children):
            raise SystemExit("subscribers failed to connect")
        await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as http:
        while True:  # every stream registered on the server
            async with http.get(url + "/health") as resp:
                if (await resp.json())["subscribers"] >= subscribers:
                    break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        async with http.get(url + "/metrics") as resp:
            before = _fanout(await resp.text())
        sent: dict[int, int] = {}
        cpu0, wall0 = _cpu_seconds(server_pid), time.monotonic()
        for report in reports:
            body = report.to_json()
            sent[report.round] = time.monotonic_ns()
            async with http.post(url + "/v1/reports", json=body) as resp:
                result = await resp.json()
                assert result.get("accepted"), result
            await asyncio.sleep(interval)
        await asyncio.sleep(1.0)  # let the last event reach everyone
        cpu1, wall1 = _cpu_seconds(server_pid), time.monotonic()
        async with http.get(url + "/health") as resp:
            health = await resp.json()
        async with http.get(url + "/metrics") as resp:
            metrics = await resp.text()
    for _, files in children:
        files[1].write_text("stop")
    latencies: list[float] = []
    missing = 0
    client_cpu = 0.0
    for child, files in children:
        child.wait(60)
        result = json.loads(files[2].read_text())
        client_cpu += result["cpu_s"]
        for log in result["logs"]:
            for round_, t0 in sent.items():
                t1 = log.get(str(round_))
                if t1 is None:
                    missing += 1
                else:
                    latencies.append((t1 - t0) / 1e6)
    after = _fanout(metrics)
    fanout_sum, fanout_count = after[0] - before[0], after[1] - before[1]
    return {
        "subscribers": subscribers,
        "reports": len(reports),
        "deliveries": len(latencies),
        "missing": missing,
        "dropped_subscribers": health["dropped_subscribers"],
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p90": round(_percentile(latencies, 0.90), 2),
            "p99": round(_percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
        },
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "subscriber_processes_cpu_s": round(client_cpu, 3),
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
        "server_cpu_ms_per_report": round(1000 * (cpu1 - cpu0) / len(reports), 2),
        "server_publish_loop_mean_ms": round(1000 * fanout_sum / max(1, fanout_count), 3),
    }


async def _main(args: argparse.Namespace) -> dict:
    committee, shares = attest.deal(4, 3, epoch=1)
    total = args.reports * 2
    workdir = Path(tempfile.mkdtemp(prefix="feed-fanout-"))
    committee.save(workdir / "committee.toml")
    (workdir / "eth.csv").write_text("timestamp,price\n1,3000\n")
    port = free_port()
    config = {
        "chains": {},
        "committee": {"file": "committee.toml"},
        "feeds": {"ETH/USD": {"decimals": 8, "sources": [{"kind": "file", "path": "eth.csv"}]}},
        "feed_round": {"interval_ms": 1000},
        "feed_server": {"listen": f"127.0.0.1:{port}", "max_subscribers": args.subscribers + 10,
                        "history_size": total + 10},
    }
    (workdir / "config.toml").write_text(tomli_w.dumps(config))
    server = subprocess.Popen([sys.executable, "-m", "relay.cli", "--log-level", "warning", "feed-server",
                               "--config", str(workdir / "config.toml")], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"

    def signed(round_: int) -> SignedReport:
        # Stamped when sent would be nicer, but signing (~3 ms) must not sit inside the timed path;
        # published_at only feeds the staleness check here.
        now = time.time_ns() // 1_000_000 + round_ * int(args.interval_ms)
        report = FeedReport("ETH/USD", round_, 3000_00000000 + round_, 1_000000, 8, 3, now, now)
        digest = report.digest(committee.epoch)
        return SignedReport(report, committee.epoch,
                            combine_signatures([attest.partial_sign(s, digest) for s in shares[:3]]))

    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(url + "/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        reports = [signed(r) for r in range(1, total + 1)]
        interval = args.interval_ms / 1000
        one = await _phase(url, port, server.pid, 1, reports[: args.reports], interval, workdir, 1, 1)
        many = await _phase(url, port, server.pid, args.subscribers, reports[args.reports:], interval, workdir,
                            args.subscriber_procs, args.reports + 1)
    finally:
        server.terminate()
        server.wait(15)
    return {"bench": "feed_fanout", "interval_ms": args.interval_ms, "subscriber_processes": args.subscriber_procs,
            "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "single": one, "fanout": many}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_subscriber":
        port, count, ready, stop, out = sys.argv[2:7]
        _subscribe(int(port), int(count), Path(ready), Path(stop), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=50, help="reports published in each phase")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="time between reports")
    parser.add_argument("--subscriber-procs", type=int, default=1, help="processes sharing the N connections")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_main(args)), indent=2))


if __name__ == "__main__":
    main()
