"""AI tasks end to end on the localnet (task protocol v2: a 1 s reverse Dutch auction, claim with a
bond, verdicts to both boards): request_task -> verified result, in each direction.

    .venv/bin/python bench/tasks.py [--tasks 10] [--burst 30] [--workers 3] [--window 1]

Starts the whole stack on free ports (anvil 0.25 s blocks, 2 confirmations; Solana localnet 100 ms
slots, finality 4 slots behind; 4 attester processes, t = 3; one relayer; workers), then per
direction:
- latency: `--tasks` sentiment tasks one after another, from `request_task` returning to
  `handle.result()` returning (attestation delivered, worker paid, everything verified off-chain),
  split into messaging (request, result and verdict carried between the chains), the auction
  (request delivered -> claimed: the workers' price is min_fee 0, reached at the auction's start,
  so this is the worker's watch + the claim transaction) and the worker's share (claimed -> result submitted: execute, sign,
  submit);
- throughput: `--burst` tasks at once with `--workers` worker processes on the serving chain:
  tasks per second until every one is completed.
Baseline in the same run: one plain message's delivery in each direction (the messaging floor a task
pays three times).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from relay.devstack import messaging_stack  # noqa: E402
from relay.log import configure_logging  # noqa: E402
from relay.sdk import TesseraClient  # noqa: E402
from relay.tasks.client import AuctionTerms  # noqa: E402

FEE = {"evm": 10**12, "solana": 10_000}
BOND = {"evm": 10**9, "solana": 10_000}  # on the serving chain
WINDOW_S = 1
TEXTS = ["Markets rallied on strong earnings.", "Customers are furious about the delay.",
         "A quiet, ordinary Tuesday.", "Best launch we have ever had!"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def line(name: str, values: list[float]) -> str:
    return (f"  {name:<44} p50 {pct(values, .5):6.2f} s   p99 {pct(values, .99):6.2f} s   "
            f"mean {statistics.fmean(values):6.2f} s   (n={len(values)})")


async def one_task(client: TesseraClient, src: str, dst: str, text: str) -> dict[str, float]:
    started = time.perf_counter()
    handle = await client.request_task(src=src, dst=dst, executor="sentiment", input=text, max_fee=FEE[src],
                                       auction=AuctionTerms(window_s=WINDOW_S, bond=BOND[dst]))
    sent = time.perf_counter()
    stages: dict[str, float] = {}
    async for event in handle.events(poll=0.05, timeout=180):
        stages.setdefault(event.stage, event.elapsed_s)
    if "completed" not in stages:
        raise RuntimeError(f"task {handle.id_hex} ended {list(stages)}")
    await handle.verify()
    stages["total"] = time.perf_counter() - sent
    stages["request_tx"] = sent - started
    return stages


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--burst", type=int, default=30)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--window", type=int, default=1, help="auction window, seconds")
    args = parser.parse_args()
    global WINDOW_S
    WINDOW_S = args.window
    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="tessera-bench-tasks-") as tmp:
        async with messaging_stack(Path(tmp)) as stack:
            await asyncio.gather(stack.start_worker("evm"), stack.start_worker("solana"))
            async with TesseraClient.from_config(stack.config_path) as client:
                print("baseline: one plain message per direction (send -> delivered at the destination)")
                receivers = {"evm": bytes.fromhex(client.config.chains["evm"].contracts["RecordingReceiver"][2:]),
                             "solana": hashlib.sha256(b"bench receiver").digest()}
                for src, dst in (("evm", "solana"), ("solana", "evm")):
                    message = await client.send(src, dst, receivers[dst], b"baseline")
                    delivery = await client.wait_delivered(message, timeout=60, poll=0.05)
                    print(f"  {src} -> {dst}: {delivery.latency_s:.2f} s")
                for src, dst in (("evm", "solana"), ("solana", "evm")):
                    print(f"\nlatency {src} -> {dst} ({args.tasks} tasks, one at a time; workers on {dst})")
                    runs = [await one_task(client, src, dst, TEXTS[i % len(TEXTS)]) for i in range(args.tasks)]
                    print(line("request_task -> verified result", [r["total"] for r in runs]))
                    print(line("  request carried (-> delivered on dst)", [r["request_delivered"] for r in runs]))
                    print(line("  auction + claim (delivered -> claimed)",
                               [r["claimed"] - r["request_delivered"] for r in runs]))
                    print(line("  worker (claimed -> result submitted)",
                               [r["result_submitted"] - r["claimed"] for r in runs]))
                    print(line("  result carried (-> recorded on src)",
                               [r["result_delivered"] - r["result_submitted"] for r in runs]))
                    print(line("  verdict (recorded -> paid on src)",
                               [r["completed"] - r["result_delivered"] for r in runs]))
                    messaging = [r["completed"] - (r["result_submitted"] - r["request_delivered"]) for r in runs]
                    print(line("  => request delivered -> result submitted", [r["result_submitted"] - r["request_delivered"]
                                                                            for r in runs]))
                    print(line("  => messaging share", messaging))
                    print(line("  (request transaction itself)", [r["request_tx"] for r in runs]))
                for extra in range(args.workers - 1):
                    await asyncio.gather(stack.start_worker("evm", name=f"extra{extra}"),
                                         stack.start_worker("solana", name=f"extra{extra}"))
                for src, dst in (("evm", "solana"), ("solana", "evm")):
                    started = time.perf_counter()
                    results = await asyncio.gather(*(one_task(client, src, dst, TEXTS[i % len(TEXTS)])
                                                     for i in range(args.burst)))
                    elapsed = time.perf_counter() - started
                    print(f"\nthroughput {src} -> {dst}: {args.burst} tasks at once, {args.workers} workers on {dst}: "
                          f"{args.burst / elapsed:.2f} tasks/s ({elapsed:.1f} s; slowest task "
                          f"{max(r['total'] for r in results):.1f} s)")


if __name__ == "__main__":
    asyncio.run(main())
