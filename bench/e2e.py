"""End-to-end messaging latency and throughput on the localnet, next to each chain's floor and own rate.

    .venv/bin/python bench/e2e.py [--messages 20] [--burst 40] [--sender raw|sdk] [--compare-batching]
                                  [--rate 300 --duration 10]

Starts the whole stack on free ports (anvil with 0.25 s blocks and 2 confirmations; the Solana
localnet server with 100 ms slots and finality 4 slots behind; 4 attester processes, t = 3; one
relayer process), then per direction:
- latency: `--messages` messages one after another through the SDK; per stage from the relayer's
  store: source inclusion -> observed (final on the source) -> t partials combined -> submitted ->
  confirmed (final on the destination);
- throughput: `--burst` messages at once, messages per second from the first submission until all
  are confirmed (the relayer's store). `--sender raw` (the default) sends them with the load
  generator of bench/loadgen.py: the source transactions (EVM Gateway.send with the quoted fee from
  several fresh funded accounts; Solana program Send from several payers) are built and signed
  before the clock starts and submitted in JSON-RPC batches as fast as the source chain takes them,
  so the sender is not the cap; the message ids come from the receipts / logs afterwards.
  `--sender sdk` sends them with `client.send` x N at once (the older measurement: the SDK's own send
  rate, ~41/s on EVM and ~128/s on Solana, caps it). Each burst also prints the CPU seconds every
  process of the stack spent during it (utime + stime from /proc/<pid>/stat of anvil, the Solana
  localnet server, each attester, the relayer and this bench process, before and after) and CPU-ms
  per message;
- sustained (`--rate R --duration T`, after the burst when both are given): R x T pre-signed send
  transactions (bench/loadgen.py, as the raw burst; Solana ones signed again a chunk at a time so no
  blockhash is older than its re-sign bound when sent) submitted paced: every 0.1 s the next R/10
  that are due (a late tick catches up, nothing goes ahead of the schedule), each one's submission
  time recorded. From the relayer's store (confirmed_at per message) it prints the offered rate (what
  was actually submitted per second), the delivered rate over [first confirmed, last confirmed] and
  over the steady part (confirmed between +2 s and +T from the first submission, per second), the
  end-to-end latency (confirmed_at - submitted) p50 / p90 / p99 / max of the messages submitted in
  the first and in the second half of the run, the backlog (submitted, not confirmed) every second,
  p50 / p99 per relayer stage for each half (the stage whose wait grows is where the backlog sits),
  the CPU per process from the first submission until all are confirmed, and a verdict: "kept up"
  only if the steady rate is >= 95 % of R and the second half's p99 is at most 1.5 x the first
  half's + 0.5 s, else "fell behind" (loadgen.sustained_verdict). A burst's messages/s include the
  two finality waits once (~1-2 s: at most ~500/s on a burst of 1000 even with an infinitely fast
  relay); a stream's steady rate does not;
- floor: one raw transaction round trip on each chain in the same run (EVM: transfer to receipt;
  Solana: transfer to `confirmed`), and each chain's finality wait;
- own rate, at the very end of the run (no relayer runs after it, so these messages are never
  relayed): `--own-rate N` (default: --burst) of the same raw send transactions submitted at once
  on each chain, transactions per second from the first submission to the last inclusion. The
  summary prints, per phase and direction, messages/s next to the source chain's and the
  destination chain's own rate, the ratio to the lower of the two, and whether issue #15's target
  (>= 300 messages/s, or >= 80 % of the lower chain rate) is met. The destination's own rate is its
  rate for these send transactions; its delivery transactions cost it more.

Batching (docs/PROTOCOL.md "Batch attestations"): `--batch-size N --batch-wait-ms W` set the relayer's
[relayer] batch_size / batch_wait_ms (default 32 / 50: on; `--batch-size 1` is off);
`--compare-batching` runs the latency and burst phases twice in the same stack, batching off then
on, each with a fresh relayer process; `--cost-sizes 1 8 32 64` sends exactly that many messages each
way through a relayer whose batches fill to that size and prints EVM gas per delivered message (from
the delivery receipts) and Solana CU per message (DeliverWithProof / Deliver transactions, and the
VerifyRoot spread over the batch) as the chains recorded them. `--receiver recording` sends the EVM
side's messages to RecordingReceiver (it stores every message: gateway plus a realistic receiver),
`--receiver noop` to NoopReceiver (does nothing: the gateway's own gas per message, what issue 15's
"<= 40k at batch 32" counts; Solana -> EVM only), `both` (the default) runs the sizes with each.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from collections import Counter
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solders.keypair import Keypair  # noqa: E402

from relay.config import load_config  # noqa: E402
from relay.log import configure_logging  # noqa: E402
from relay.sdk import TesseraClient  # noqa: E402
from relay.devstack import messaging_stack  # noqa: E402
from relay.store import Store  # noqa: E402

from bench.loadgen import (chain_rate, load_for, paced_stats, process_cpu, submit_paced,  # noqa: E402
                           sustained_verdict)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"  {name:<34} p50 {pct(ms, .5):8.1f} ms   p99 {pct(ms, .99):8.1f} ms   (n={len(ms)})"


def stage_times(db: Path, ids: list[bytes]) -> list[tuple[float, float, float, float]]:
    with sqlite3.connect(db) as conn:
        out = []
        for mid in ids:
            observed, signed, submitted, confirmed = conn.execute(
                "SELECT observed_at, signed_at, submitted_at, confirmed_at FROM messages WHERE message_id = ?",
                (mid,)).fetchone()
            out.append((observed, signed, submitted, confirmed))
        return out


async def wait_confirmed(db: Path, ids: list[bytes], timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            marks = ",".join("?" for _ in ids)
            done = conn.execute(f"SELECT count(*) FROM messages WHERE stage = 'confirmed' AND message_id IN ({marks})",
                                ids).fetchone()[0]
        if done == len(ids):
            return time.time()
        await asyncio.sleep(0.02)
    raise TimeoutError("messages not confirmed in time")


async def floors(config) -> dict[str, float]:
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed
    from solders.system_program import TransferParams, transfer
    from solders.message import Message
    from solders.transaction import Transaction
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.evm.devnet import ANVIL_DEV_KEYS
    from adapters.solana.rpc import load_keypair

    evm, sol = config.chains["evm"], config.chains["solana"]
    w3 = AsyncWeb3(AsyncHTTPProvider(evm.rpc_urls[0]))
    account = w3.eth.account.from_key(ANVIL_DEV_KEYS[5])
    evm_times, sol_times = [], []
    try:
        for _ in range(5):
            nonce = await w3.eth.get_transaction_count(account.address, "pending")
            tx = {"to": account.address, "value": 1, "gas": 21000, "nonce": nonce, "chainId": evm.chain_id,
                  "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
            started = time.perf_counter()
            tx_hash = await w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
            await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.01)
            evm_times.append(time.perf_counter() - started)
    finally:
        await w3.provider.disconnect()
    payer = load_keypair(sol.sender.read_text())
    async with AsyncClient(sol.rpc_urls[0]) as client:
        for _ in range(5):
            started = time.perf_counter()
            blockhash = (await client.get_latest_blockhash()).value.blockhash
            ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10**6))
            tx = Transaction([payer], Message([ix], payer.pubkey()), blockhash)
            sig = (await client.send_transaction(tx)).value
            await client.confirm_transaction(sig, commitment=Confirmed, sleep_seconds=0.01)
            sol_times.append(time.perf_counter() - started)
    return {"evm": statistics.median(evm_times), "solana": statistics.median(sol_times)}


_LAST_DB: list[Path] = []  # the previous relayer's store: the next one starts from its watch cursors


async def start_relayer(stack, label: str, **relayer: object):
    """A fresh relayer process with its own store, account and `relayer` settings. It resumes the
    previous bench relayer's watch cursors: a fresh store would re-read every earlier transaction of
    the Solana program first (its watcher starts from the oldest the node has), which is not what the
    phase measures."""
    db = stack.state_dir / f"relayer-{label}.db"
    if _LAST_DB and not db.exists():
        with sqlite3.connect(_LAST_DB[-1]) as conn:
            cursors = conn.execute("SELECT name, cursor FROM cursors WHERE name LIKE 'watch:%'").fetchall()
        store = await Store.open(db)
        try:
            for name, cursor in cursors:
                await store.set_cursor(name, cursor)
        finally:
            await store.close()
    proc = await stack.start_relayer(label, replica=label, **relayer)
    _LAST_DB.append(Path(load_config(stack.state_dir / f"config-{label}.toml").relayer.db))
    return proc, _LAST_DB[-1]


async def phase(stack, client, loads, sender: str, results: list[dict], label: str, messages: int, burst: int,
                batch_size: int, batch_wait_ms: float, receiver_evm: bytes, rate: float = 0, duration: float = 0,
                sustained: list[dict] | None = None) -> None:
    """Latency and burst both ways through a fresh relayer process with these batch settings."""
    proc, db = await start_relayer(stack, label, batch_size=batch_size, batch_wait_ms=batch_wait_ms)
    print(f"\n=== {label}: [relayer] batch_size = {batch_size}, batch_wait_ms = {batch_wait_ms:g} ===")
    try:
        for src, dst, receiver in (("evm", "solana", None), ("solana", "evm", receiver_evm)):
            sent_at, ids = [], []
            for i in range(messages):
                # A random pause of up to one anvil block first: sending right after the previous
                # message was confirmed (on a block) would phase-lock every lone message to anvil's
                # 0.25 s block grid, so a few ms more or less in the relayer could read as a whole block.
                await asyncio.sleep(random.uniform(0.0, 0.25))
                target = receiver or bytes(Keypair().pubkey())
                sent = await client.send(src, dst, target, f"bench {i}".encode())
                sent_at.append(time.time())  # the send returns once the source tx is included
                ids.append(sent.message_id)
                await wait_confirmed(db, [sent.message_id])
            if messages:
                stages = stage_times(db, ids)
                print(f"\n{src} -> {dst}: latency per stage ({messages} messages, one at a time)")
                print(row("included -> observed (final)", [o - s for s, (o, *_ ) in zip(sent_at, stages)]))
                print(row("observed -> t partials combined", [g - o for o, g, _, _ in stages]))
                print(row("combined -> submitted", [u - g for _, g, u, _ in stages]))
                print(row("submitted -> confirmed (final)", [c - u for _, _, u, c in stages]))
                print(row("total: included -> confirmed", [c - s for s, (_, _, _, c) in zip(sent_at, stages)]))
            if burst:
                results.append(await run_burst(stack, client, loads, sender, label, db, src, dst, burst, receiver))
            if rate:
                got = await run_sustained(stack, client, loads, label, db, src, dst, rate, duration, receiver)
                if sustained is not None:
                    sustained.append(got)
    finally:
        proc.stop()


def stack_pids(stack) -> dict[str, int]:
    """The stack's live processes by name (the chains' nodes, attesters, relayers), and this one."""
    pids = {child.name: child.pid for child in stack.net.children if child.alive()}
    pids["bench (the sender)"] = os.getpid()
    return pids


def print_cpu(before: dict[str, float], after: dict[str, float], seconds: float, messages: int,
              what: str = "the burst") -> None:
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(used.values())
    print(f"    CPU during {what} ({seconds:.2f} s wall, {nproc()} cores = {seconds * nproc():.2f} core-s available; "
          f"{total:.2f} CPU-s used = {total / max(seconds, 1e-9) / nproc() * 100:.0f} % of the machine):")
    for name, cpu in sorted(used.items(), key=lambda item: -item[1]):
        if cpu > 0 or name.startswith("relayer") or name.startswith("bench"):
            print(f"      {name:<28} {cpu:7.2f} CPU-s  {cpu * 1000 / messages:7.2f} CPU-ms per message  "
                  f"({cpu / max(seconds, 1e-9) * 100:5.1f} % of a core)")
    print(f"      {'all':<28} {total:7.2f} CPU-s  {total * 1000 / messages:7.2f} CPU-ms per message")


def print_timeline(db: Path, ids: list[bytes], started: float) -> None:
    """When the burst's messages reached each of the relayer's stages, from the first submission:
    where the time goes (a stage whose last message is late while the CPU is idle is a wait)."""
    stages = stage_times(db, ids)
    print("    timeline from the first submission (first / median / last message reaching the stage):")
    for name, column in (("observed (final on the source)", 0), ("t partials combined", 1), ("submitted", 2),
                         ("confirmed (final on the destination)", 3)):
        times = sorted(t[column] - started for t in stages if t[column] is not None)
        if times:
            print(f"      {name:<38} +{times[0]:6.2f} / +{statistics.median(times):6.2f} / +{times[-1]:6.2f} s")


def nproc() -> int:
    return len(os.sched_getaffinity(0))


async def wait_confirmed_txs(db: Path, source_txs: list[str], timeout: float = 900) -> float:
    """When every message of these source transactions (one each) is confirmed, by the relayer's store."""
    deadline = time.monotonic() + timeout
    marks = ",".join("?" for _ in source_txs)
    done = 0
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            counts = dict(conn.execute(f"SELECT stage, count(*) FROM messages WHERE source_tx IN ({marks}) "
                                       "GROUP BY stage", source_txs).fetchall())
            if counts.get("dead"):
                why = conn.execute(f"SELECT source_tx, reason FROM messages WHERE stage = 'dead' AND source_tx IN "
                                   f"({marks}) LIMIT 1", source_txs).fetchone()
                raise RuntimeError(f"{counts['dead']} of the burst's messages are dead in the relayer, e.g. the one "
                                   f"of {why[0]}: {why[1]}")
        done = counts.get("confirmed", 0)
        if done >= len(source_txs):
            return time.time()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{len(source_txs) - done} of {len(source_txs)} messages not confirmed in {timeout:.0f}s")


def burst_payloads(n: int, tag: str) -> list[bytes]:
    return [f"{tag} {i:06d}".encode() for i in range(n)]  # one length: one quote


async def run_burst(stack, client, loads, sender: str, label: str, db: Path, src: str, dst: str, burst: int,
                    receiver: bytes | None) -> dict:
    """`burst` messages src -> dst at once; messages/s from the first submission until all are
    confirmed, and the CPU each process spent meanwhile."""
    if receiver is not None and len(receiver) == 20:
        receiver = bytes(12) + receiver  # an EVM address, left-padded as a 32-byte receiver
    receivers = [receiver or bytes(Keypair().pubkey()) for _ in range(burst)]
    payloads = burst_payloads(burst, f"burst {label}")
    if sender == "sdk":
        before = process_cpu(stack_pids(stack))
        started = time.time()
        sends = [client.send(src, dst, r, p) for r, p in zip(receivers, payloads)]
        burst_ids = [sent.message_id for sent in await asyncio.gather(*sends)]
        all_sent = all_included = time.time()
        done = await wait_confirmed(db, burst_ids, timeout=900)
        after = process_cpu(stack_pids(stack))
        how = f"the SDK (client.send x {burst} at once; its send rate on {src} is the ceiling here)"
    else:
        load = loads[src]
        prepared = await load.prepare(client._chain(dst).domain, receivers, payloads)  # signed before the clock
        before = process_cpu(stack_pids(stack))
        sent = await load.submit(prepared)
        started, all_sent = sent.started, sent.all_submitted
        await load.wait_included(sent)
        all_included = sent.last_included
        done = await wait_confirmed_txs(db, sent.tx_ids)
        after = process_cpu(stack_pids(stack))
        burst_ids = await load.message_ids(sent)
        await wait_confirmed(db, burst_ids, timeout=60)  # the same messages, by id: none counted twice
        how = "the raw load generator (pre-signed, bench/loadgen.py)"
    rate = burst / (done - started)
    print(f"\n  {src} -> {dst} burst: {burst} messages sent by {how}: submitted in {all_sent - started:.2f} s, all "
          f"included on {src} after {all_included - started:.2f} s ({burst / max(all_included - started, 1e-9):.1f}/s); "
          f"all confirmed on {dst} after {done - started:.2f} s = {rate:.1f} messages/s, "
          f"{done - all_included:.2f} s after the last was included ({batches_used(db, burst_ids)})")
    print_timeline(db, burst_ids, started)
    print_cpu(before, after, done - started, burst)
    return {"label": label, "src": src, "dst": dst, "n": burst, "rate": rate, "sender": sender}


def print_stage_split(db: Path, ids: list[bytes], submitted: list[float], started: float, duration: float) -> None:
    """Where a sustained run's latency goes: p50 / p99 per stage of the messages submitted in the first
    and in the second half (a stage whose wait grows from one half to the other is where the backlog is).
    `ids` and `submitted` in the same order."""
    stages = stage_times(db, ids)
    halves = {"first half": [], "second half": []}
    for sub, times in zip(submitted, stages):
        halves["first half" if sub - started < duration / 2 else "second half"].append((sub, *times))
    print("    where the latency goes, p50 / p99 per stage (first half | second half of the submissions):")
    for name, a, b in (("submitted -> observed (final on source)", 0, 1), ("observed -> t partials combined", 1, 2),
                       ("combined -> submitted to destination", 2, 3), ("submitted -> confirmed (final)", 3, 4)):
        parts = []
        for rows in halves.values():
            waits = [r[b] - r[a] for r in rows if r[a] is not None and r[b] is not None]
            parts.append(f"{pct(waits, .5):5.2f} / {pct(waits, .99):5.2f} s" if waits else "      -      ")
        print(f"      {name:<40} {parts[0]} | {parts[1]}")


def confirmed_at_of(db: Path, source_txs: list[str]) -> dict[str, float]:
    """confirmed_at per source transaction (one message each), from the relayer's store."""
    with sqlite3.connect(db) as conn:
        marks = ",".join("?" for _ in source_txs)
        rows = conn.execute(f"SELECT source_tx, confirmed_at FROM messages WHERE source_tx IN ({marks})",
                            source_txs).fetchall()
    out = dict(rows)
    if len(rows) != len(source_txs) or any(out.get(tx) is None for tx in source_txs):
        raise RuntimeError(f"{len(rows)} rows for {len(source_txs)} source transactions, or one without confirmed_at")
    return out


def fmt_latency(figures: dict[str, float]) -> str:
    if not figures:
        return "no messages"
    return "  ".join(f"{k} {v:6.2f} s" for k, v in figures.items())


async def run_sustained(stack, client, loads, label: str, db: Path, src: str, dst: str, rate: float,
                        duration: float, receiver: bytes | None) -> dict:
    """rate x duration messages src -> dst, submitted paced at `rate` per second; the offered and the
    delivered rates, latency per half, backlog per second, CPU per process and the verdict."""
    if receiver is not None and len(receiver) == 20:
        receiver = bytes(12) + receiver  # an EVM address, left-padded as a 32-byte receiver
    n = max(1, round(rate * duration))
    receivers = [receiver or bytes(Keypair().pubkey()) for _ in range(n)]
    payloads = burst_payloads(n, f"paced {label}")
    load = loads[src]
    prepared = await load.prepare(client._chain(dst).domain, receivers, payloads)  # signed before the clock
    before = process_cpu(stack_pids(stack))
    sent = await submit_paced(load, prepared, rate)
    started = sent.started
    await load.wait_included(sent)
    done = await wait_confirmed_txs(db, sent.tx_ids)
    after = process_cpu(stack_pids(stack))
    ids = await load.message_ids(sent)
    await wait_confirmed(db, ids, timeout=60)  # the same messages, by id: none counted twice
    confirmed = confirmed_at_of(db, sent.tx_ids)
    stats = paced_stats([sent.submitted_at[tx] for tx in sent.tx_ids], [confirmed[tx] for tx in sent.tx_ids],
                        rate, duration)
    first, second = stats.latency["first half"], stats.latency["second half"]
    kept, verdict = sustained_verdict(rate, stats.steady, first.get("p99", 0.0), second.get("p99", 0.0))
    print(f"\n  {src} -> {dst} sustained: {n} messages at {rate:g}/s for {duration:g} s, pre-signed and submitted "
          f"paced by bench/loadgen.py (every 0.1 s what is due)")
    print(f"    offered: {n} submitted from +0.00 to +{max(sent.submitted_at.values()) - started:.2f} s = "
          f"{stats.offered:.1f}/s; per second: {' '.join(str(c) for c in stats.offered_per_second)}")
    print(f"    delivered: first confirmed +{stats.first_confirmed:.2f} s, last +{stats.last_confirmed:.2f} s = "
          f"{stats.delivered_window:.1f}/s over [first, last]; steady (confirmed between +{stats.steady_from:g} s "
          f"and +{duration:g} s): {stats.steady:.1f}/s ({batches_used(db, ids)})")
    print(f"    latency submitted -> confirmed, first half:  {fmt_latency(first)}")
    print(f"    latency submitted -> confirmed, second half: {fmt_latency(second)}")
    print(f"    backlog (submitted, not confirmed) at +1 s, +2 s, ...: {' '.join(str(b) for b in stats.backlog)}")
    print(f"    verdict: {verdict}")
    print_stage_split(db, ids, [sent.submitted_at[tx] for tx in sent.tx_ids], started, duration)
    print_timeline(db, ids, started)
    print_cpu(before, after, done - started, n, "the run, first submission to all confirmed")
    return {"label": label, "src": src, "dst": dst, "rate": rate, "steady": stats.steady, "kept": kept,
            "verdict": verdict}


async def own_rates(config, client, loads, n: int) -> tuple[dict[str, float], set[str]]:
    """Each chain's own rate for the burst's send transactions, with no relayer running: n raw
    sends at once, transactions per second from the first submission to the last inclusion. The
    messages are never relayed (no relayer runs after this). Also the chains that took the burst at
    once and then only waited for one or two blocks: not saturated, their rate is a lower bound."""
    names = list(loads)
    rates: dict[str, float] = {}
    lower_bound: set[str] = set()
    for name in names:
        other = next(o for o in names if o != name)
        receiver = (bytes.fromhex(config.chains[other].contracts["RecordingReceiver"][2:]).rjust(32, b"\0")
                    if config.chains[other].kind == "evm" else None)
        receivers = [receiver or bytes(Keypair().pubkey()) for _ in range(n)]
        sent = await chain_rate(loads[name], client._chain(other).domain, receivers, burst_payloads(n, "own rate"))
        rates[name] = sent.inclusion_rate()
        spanned = len(set(sent.positions.values()))
        if spanned <= 2 and sent.all_submitted - sent.started < 0.5 * (sent.last_included - sent.started):
            # Accepted fast, then waited for a block or two: the chain's block time, not its capacity,
            # set this rate. (The Solana localnet executes on arrival: its rate is how fast it takes them.)
            lower_bound.add(name)
        unit = "slots" if config.chains[name].kind == "solana" else "blocks"
        print(f"  {name}: {n} send transactions submitted at once (no relayer running) included in "
              f"{sent.last_included - sent.started:.2f} s = {rates[name]:.1f} transactions/s "
              f"(submitted in {sent.all_submitted - sent.started:.2f} s; in {len(set(sent.positions.values()))} "
              f"{unit}, at most {max(Counter(sent.positions.values()).values())} in one)")
        if name in lower_bound:
            print(f"    ({name} took them all in {sent.all_submitted - sent.started:.2f} s and then waited for "
                  f"{spanned} {unit}: not saturated, so its rate is at least this; a larger --own-rate N measures more)")
    return rates, lower_bound


def print_summary(results: list[dict], rates: dict[str, float], lower_bound: set[str]) -> None:
    print("\n=== throughput next to the chains' own rates (same run; issue #15: >= 300 messages/s, or >= 80 % of "
          "the lower chain rate) ===")
    print(f"  {'phase':<6} {'direction':<16} {'sender':<6} {'messages/s':>10} {'src own/s':>10} {'dst own/s':>10} "
          f"{'ratio':>7}  target")
    for r in results:
        src_rate, dst_rate = rates.get(r["src"]), rates.get(r["dst"])
        if src_rate is None or dst_rate is None:
            print(f"  {r['label']:<6} {r['src'] + ' -> ' + r['dst']:<16} {r['sender']:<6} {r['rate']:>10.1f}  "
                  "(chain rates not measured)")
            continue
        lower = r["src"] if src_rate <= dst_rate else r["dst"]
        ratio = r["rate"] / min(src_rate, dst_rate)
        if r["rate"] >= 300:
            met = "met (>= 300/s)"
        elif ratio >= 0.8:
            met = ("undecided: >= 80 % of a chain rate that is only a lower bound (raise --own-rate)"
                   if lower in lower_bound else "met (>= 80 % of the lower chain rate)")
        else:
            met = "NOT met"
        src_text = (">=" if r["src"] in lower_bound else "") + f"{src_rate:.1f}"
        dst_text = (">=" if r["dst"] in lower_bound else "") + f"{dst_rate:.1f}"
        print(f"  {r['label']:<6} {r['src'] + ' -> ' + r['dst']:<16} {r['sender']:<6} {r['rate']:>10.1f} "
              f"{src_text:>10} {dst_text:>10} {('<=' if lower in lower_bound else '') + f'{ratio * 100:.0f}%':>7}  {met}")
    print("  (a chain's own rate: the same raw send transactions submitted at once with no relayer running, "
          "first submission to last inclusion; the destination's is its rate for these program/contract "
          "transactions, delivery transactions cost it more)")


def batches_used(db: Path, ids: list[bytes]) -> str:
    with sqlite3.connect(db) as conn:
        marks = ",".join("?" for _ in ids)
        batched = conn.execute(f"SELECT count(*), count(DISTINCT root) FROM batch_members WHERE message_id IN ({marks})",
                               ids).fetchone()
        txs = conn.execute(f"SELECT count(DISTINCT dest_tx) FROM messages WHERE message_id IN ({marks})", ids).fetchone()
    return f"{batched[0]} in {batched[1]} batches, {txs[0]} delivery transactions"


async def deploy_noop_receiver(config) -> bytes:
    """contracts/evm/src/test/NoopReceiver.sol on the localnet's anvil, as a 32-byte receiver."""
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.evm.deploy import deploy
    from adapters.evm.devnet import ANVIL_DEV_KEYS

    w3 = AsyncWeb3(AsyncHTTPProvider(config.chains["evm"].rpc_urls[0]))
    try:
        address = await deploy(w3, ANVIL_DEV_KEYS[5], "NoopReceiver")
    finally:
        await w3.provider.disconnect()
    return bytes(12) + bytes.fromhex(address[2:])


async def costs(stack, client, sizes: list[int], receiver_evm: bytes, receiver: str = "recording") -> None:
    """Exactly n messages each way through a relayer whose batches fill to n: what the chains charged.
    With receiver "noop" the EVM side's messages go to NoopReceiver and only Solana -> EVM is sent."""
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed
    from solders.signature import Signature
    from web3 import AsyncHTTPProvider, AsyncWeb3

    config = load_config(stack.config_path)
    noop = receiver == "noop"
    if noop:
        receiver_evm = await deploy_noop_receiver(config)
        print("\n=== gateway gas per delivered message (NoopReceiver on EVM: the receiver does nothing; "
              "Solana -> EVM only) ===")
    else:
        print("\n=== cost per delivered message, as the chains recorded it (RecordingReceiver on EVM: it stores "
              "each message; a fresh account on Solana) ===")
    w3 = AsyncWeb3(AsyncHTTPProvider(config.chains["evm"].rpc_urls[0]))
    sol = AsyncClient(config.chains["solana"].rpc_urls[0])
    try:
        for n in sizes:
            label = f"cost{n}{'-noop' if noop else ''}"
            proc, db = await start_relayer(stack, label, batch_size=n, batch_wait_ms=5000 if n > 1 else 0)
            try:
                to_evm = await asyncio.gather(*(client.send("solana", "evm", receiver_evm, f"cost {i}".encode())
                                                for i in range(n)))
                to_sol = [] if noop else await asyncio.gather(*(
                    client.send("evm", "solana", bytes(Keypair().pubkey()), f"cost {i}".encode()) for i in range(n)))
                ids = [m.message_id for m in (*to_evm, *to_sol)]
                await wait_confirmed(db, ids, timeout=300)
                with sqlite3.connect(db) as conn:
                    marks = ",".join("?" for _ in ids)
                    rows = conn.execute(f"SELECT message_id, dst_domain, dest_tx FROM messages WHERE message_id IN "
                                        f"({marks})", ids).fetchall()
                    roots = conn.execute("SELECT root, dst_domain FROM batches").fetchall()
                evm_domain = config.chains["evm"].domain
                evm_txs = {r[2] for r in rows if r[1] == evm_domain}
                gas = [int((await w3.eth.get_transaction_receipt(tx))["gasUsed"]) for tx in evm_txs]
                evm_line = (f"EVM {sum(gas) / n:,.0f} gas per message ({len(evm_txs)} transaction(s), "
                            f"{sum(gas):,} gas)")
                if noop:
                    print(f"  batch {n:>2}, NoopReceiver: {evm_line}")
                    continue
                sol_txs = [r[2] for r in rows if r[1] != evm_domain]
                cus = []
                for tx in sol_txs:
                    got = await sol.get_transaction(Signature.from_string(tx), commitment=Confirmed,
                                                    max_supported_transaction_version=0)
                    cus.append(got.value.transaction.meta.compute_units_consumed)
                verify_cu = []
                from adapters.solana.program import root_address
                from solders.pubkey import Pubkey
                program = Pubkey.from_string(config.chains["solana"].program_id)
                for root, dst in roots:
                    if dst == evm_domain:
                        continue
                    history = (await sol.get_signatures_for_address(root_address(program, bytes(root)),
                                                                     commitment=Confirmed)).value
                    for entry in history:
                        got = await sol.get_transaction(entry.signature, encoding="base64", commitment=Confirmed,
                                                        max_supported_transaction_version=0)
                        data = bytes(got.value.transaction.transaction.message.instructions[-1].data)
                        if data[:1] == bytes([19]):  # VerifyRoot
                            verify_cu.append(got.value.transaction.meta.compute_units_consumed)
                per_msg_cu = sum(cus) / len(cus)
                amortised = (sum(cus) + sum(verify_cu)) / len(cus)
                print(f"  batch {n:>2}: {evm_line}; Solana {per_msg_cu:,.0f} CU per message delivery transaction "
                      f"(max {max(cus):,}), {amortised:,.0f} with VerifyRoot ({', '.join(f'{c:,}' for c in verify_cu) or 'none'}) "
                      f"spread over the batch")
            finally:
                proc.stop()
    finally:
        await w3.provider.disconnect()
        await sol.close()


async def run(messages: int, burst: int, batch_size: int, batch_wait_ms: float, compare: bool,
              cost_sizes: list[int], receiver: str = "both", sender: str = "raw", own_rate_n: int | None = None,
              rate: float = 0, duration: float = 0) -> None:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        async with messaging_stack(Path(tmp), relayer=False) as stack:
            config = load_config(stack.config_path)
            receiver_evm = bytes.fromhex(config.chains["evm"].contracts["RecordingReceiver"][2:])
            floor = await floors(config)
            print(f"floor: EVM transfer -> receipt {floor['evm'] * 1000:.1f} ms (0.25 s blocks); "
                  f"Solana transfer -> confirmed {floor['solana'] * 1000:.1f} ms (100 ms slots)")
            print("finality waits by configuration: EVM 2 confirmations = ~0.5 s; Solana finalized = 4 slots = ~0.4 s")
            async with TesseraClient.from_config(stack.config_path) as client:
                loads = {name: load_for(name, chain, client._chain(name)) for name, chain in config.chains.items()}
                results: list[dict] = []
                sustained: list[dict] = []
                n = burst if own_rate_n is None else own_rate_n
                try:
                    if sender == "raw" or n or rate:
                        for load in loads.values():
                            await load.setup()
                    if compare:
                        await phase(stack, client, loads, sender, results, "off", messages, burst, 1, 0, receiver_evm,
                                    rate, duration, sustained)
                    if batch_size > 1 or not compare:
                        await phase(stack, client, loads, sender, results, "on" if batch_size > 1 else "off2", messages,
                                    burst, batch_size, batch_wait_ms, receiver_evm, rate, duration, sustained)
                    for kind in ("recording", "noop"):
                        if cost_sizes and receiver in (kind, "both"):
                            await costs(stack, client, cost_sizes, receiver_evm, kind)
                    rates, lower_bound = {}, set()
                    if n:
                        # Last: no relayer runs after this, so these sends are never relayed and no later
                        # phase sees them.
                        print(f"\n=== each chain's own rate for the burst's send transactions ({n} at once, no relayer "
                              f"running) ===")
                        rates, lower_bound = await own_rates(config, client, loads, n)
                    if results:
                        print_summary(results, rates, lower_bound)
                    if sustained:
                        print(f"\n=== sustained {rate:g} messages/s for {duration:g} s (paced) ===")
                        for r in sustained:
                            print(f"  {r['label']:<6} {r['src'] + ' -> ' + r['dst']:<16} {r['verdict']}")
                finally:
                    for load in loads.values():
                        await load.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32, help="[relayer] batch_size (1: no batching)")
    parser.add_argument("--batch-wait-ms", type=float, default=50.0, help="[relayer] batch_wait_ms")
    parser.add_argument("--compare-batching", action="store_true", help="batching off, then on, in one run")
    parser.add_argument("--cost-sizes", type=int, nargs="*", default=[], help="e.g. 1 8 32 64")
    parser.add_argument("--receiver", choices=("recording", "noop", "both"), default="both",
                        help="EVM receiver of the cost runs: RecordingReceiver (stores each message), NoopReceiver "
                             "(the gateway's own gas), or both one after the other")
    parser.add_argument("--sender", choices=("raw", "sdk"), default="raw",
                        help="who sends the burst: raw = pre-signed transactions submitted as fast as the source "
                             "chain takes them (bench/loadgen.py); sdk = client.send x N at once (the SDK's own rate caps it)")
    parser.add_argument("--own-rate", type=int, default=None, metavar="N",
                        help="transactions per chain for the chains' own rates at the end (default: --burst; 0: skip)")
    parser.add_argument("--rate", type=float, default=0.0, metavar="R",
                        help="sustained mode: R messages/s each way, submitted paced (with --duration; 0: off)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="T",
                        help="sustained mode: seconds of paced load each way (>= 4: the steady part is +2 s .. +T)")
    args = parser.parse_args()
    for name in ("messages", "burst", "own_rate"):
        if (getattr(args, name) or 0) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if not (math.isfinite(args.rate) and math.isfinite(args.duration)) or args.rate < 0 or args.duration < 0:
        parser.error("--rate and --duration must be finite numbers >= 0")
    if bool(args.rate) != bool(args.duration):
        parser.error("--rate and --duration go together (sustained mode), e.g. --rate 300 --duration 10")
    if args.rate and args.duration < 4:
        parser.error("--duration must be >= 4 s: the steady part is from +2 s to +T")
    if args.rate and args.rate * args.duration < 10:
        parser.error("--rate x --duration must be >= 10 messages (a latency per half of the run needs some)")
    if any(n < 1 for n in args.cost_sizes):
        parser.error("--cost-sizes must be >= 1")
    configure_logging("warning")
    asyncio.run(run(args.messages, args.burst, args.batch_size, args.batch_wait_ms, args.compare_batching,
                    args.cost_sizes, args.receiver, args.sender, args.own_rate, args.rate, args.duration))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
