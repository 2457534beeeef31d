"""The relayer store's cost for a burst (issue #15 item 5): N messages taken through
observed -> ready (signed) -> submitted -> one confirmation poll (postponed) -> confirmed, written

- per message, as the relayer wrote them before batching: each observation and its watch cursor
  separately, each step result its own transaction (`per-message`), the steps run 16 at a time like
  the pipeline's concurrency;
- batched, as it writes them now: a watcher's burst with its cursor in one transaction
  (`Store.add_observed_many`), each step's results for a round of due messages in one transaction
  (`Store.write_steps`, the pipeline's group commit), `--round` messages per round (`batched`).

Both in the same run, on SQLite (a file: WAL, synchronous=FULL, as the relayer runs it) and on
PostgreSQL (a server of the run's own, tests/support/postgres.py: fsync off, so its figures are CPU and
round trips, not disk). Printed per engine and path: wall time, this process's CPU (all threads:
aiosqlite's worker included) and, for PostgreSQL, the server backends' CPU.

    .venv/bin/python bench/relayer_store.py [--messages 1000] [--round 100] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.envelope import Envelope  # noqa: E402
from relay.protocol import MessageKind  # noqa: E402
from relay.store import RetryReason, Stage, Store  # noqa: E402

SRC, DST = 31337, 13375
CURSOR = f"watch:{SRC}"
CONCURRENCY = 16  # PipelineSettings.concurrency: per-message writes of one round run this many at once


def envelopes(count: int, offset: int) -> list[Envelope]:
    return [Envelope(MessageKind.DATA, offset + n, SRC, b"\x01" * 32, DST, b"\x02" * 32, b"p" * 64)
            for n in range(count)]


# -- the writes as the relayer made them before batching (one transaction per message and step) -----
async def old_advance(store: Store, message_id: bytes, stage: Stage, **fields: object) -> bool:
    """Store.advance as it was: one UPDATE (a transaction with the submission's INSERT when submitted)."""
    now = time.time()
    stamp = {Stage.READY: "signed_at", Stage.SUBMITTED: "submitted_at", Stage.CONFIRMED: "confirmed_at"}.get(stage)
    if stamp and stamp not in fields:
        fields[stamp] = now
    assignments = {"stage": stage.value, "reason": "", "reason_code": "", "attempts": 0,
                   "next_attempt_at": float(now), "updated_at": now, **fields}
    if stage is Stage.SUBMITTED and fields.get("dest_tx"):
        async with store._db.transaction() as tx:
            held = await store._step_write(message_id, assignments, tx=tx)
            await tx.execute("INSERT INTO submissions (message_id, replica, tx, lease_held, at) VALUES (?, ?, ?, ?, ?)",
                             message_id, store.replica, fields["dest_tx"], int(held), now)
        return held
    return await store._step_write(message_id, assignments)


async def old_postpone(store: Store, message_id: bytes, next_at: float) -> bool:
    return await store._step_write(message_id, {"reason": "pending", "reason_code": RetryReason.AWAITING_FINALITY.value,
                                                "next_attempt_at": next_at, "updated_at": time.time()})


async def in_rounds(items: list, step) -> None:
    for start in range(0, len(items), CONCURRENCY):
        await asyncio.gather(*(step(i) for i in items[start:start + CONCURRENCY]))


async def per_message(store: Store, batch: list[Envelope]) -> None:
    for i, e in enumerate(batch):  # the watcher: observation, then its cursor
        await store.add_observed(e, f"0x{e.nonce:064x}")
        await store.set_cursor(CURSOR, f"{e.nonce}:{i}")
    ids = [e.message_id for e in batch]
    await in_rounds(ids, lambda m: old_advance(store, m, Stage.READY, epoch=1, signature=b"\x07" * 64))
    await in_rounds(ids, lambda m: old_advance(store, m, Stage.SUBMITTED, dest_tx="0x" + m.hex()))
    await in_rounds(ids, lambda m: old_postpone(store, m, time.time() + 0.25))
    await in_rounds(ids, lambda m: old_advance(store, m, Stage.CONFIRMED))


async def batched(store: Store, batch: list[Envelope], per_round: int) -> None:
    for start in range(0, len(batch), per_round):
        part = batch[start:start + per_round]
        await store.add_observed_many([(e, f"0x{e.nonce:064x}") for e in part], cursor=(CURSOR, f"{part[-1].nonce}"))
    ids = [e.message_id for e in batch]
    rounds = [ids[s:s + per_round] for s in range(0, len(ids), per_round)]
    for part in rounds:
        await store.write_steps([store.advance_write(m, Stage.READY, epoch=1, signature=b"\x07" * 64) for m in part])
    for part in rounds:
        await store.write_steps([store.advance_write(m, Stage.SUBMITTED, dest_tx="0x" + m.hex()) for m in part])
    for part in rounds:
        await store.write_steps([store.postpone_write(m, RetryReason.AWAITING_FINALITY, "pending", time.time() + 0.25)
                                 for m in part])
    for part in rounds:
        await store.write_steps([store.advance_write(m, Stage.CONFIRMED) for m in part])


def _children_cpu(parent: int) -> float:
    """CPU seconds (user + system) of the live children of `parent` (PostgreSQL's backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            total += int(fields[11]) + int(fields[12])
    return total / tick


async def measure(location: str, label: str, messages: int, per_round: int, server_pid: int | None) -> list[str]:
    store = await Store.open(location, replica="bench")
    lines = []
    try:
        offset = 0
        for name, run in (("per-message", lambda b: per_message(store, b)),
                          ("batched", lambda b: batched(store, b, per_round))):
            burst = envelopes(messages, offset)
            offset += messages
            server0 = _children_cpu(server_pid) if server_pid else 0.0
            wall0, cpu0 = time.perf_counter(), time.process_time()
            await run(burst)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            server = (_children_cpu(server_pid) - server0) if server_pid else None
            done = [await store.get(e.message_id) for e in burst[:: max(1, messages // 20)]]
            assert all(r is not None and r.stage is Stage.CONFIRMED for r in done), f"{name}: not all confirmed"
            line = (f"{label:<10} {name:<12} {messages} msgs  wall {wall:7.3f} s  relayer CPU {cpu:7.3f} s "
                    f"({1000 * cpu / messages:6.3f} ms/msg)")
            if server is not None:
                line += f"  server CPU {server:6.2f} s"
            lines.append(line)
            print(line, flush=True)
    finally:
        await store.close()
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--round", type=int, default=100, help="messages per batched write (the due limit: 100)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    if args.messages < 1 or args.round < 1:
        parser.error("--messages and --round must be at least 1")
    with tempfile.TemporaryDirectory(prefix="tessera-bench-store-") as tmp:
        await measure(str(Path(tmp) / "relayer.db"), "sqlite", args.messages, args.round, None)
    if args.no_postgres:
        return
    from tests.support.postgres import PostgresMissing, PostgresServer

    try:
        server = PostgresServer.start()
    except PostgresMissing as exc:
        print(f"postgresql skipped: {exc}")
        return
    try:
        pid = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
        await measure(server.create_database("bench"), "postgresql", args.messages, args.round, pid)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
