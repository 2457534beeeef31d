"""Relayer throughput with 1, 2 and 3 replicas on one PostgreSQL vs one relayer on SQLite, same run.

    .venv/bin/python bench/relayer_replicas.py [--messages 30] [--runs sqlite:1 postgresql:1 postgresql:2 postgresql:3]

One PostgreSQL server for the whole run (initdb + pg_ctl in a temporary directory,
tests/support/postgres.py) and, per configuration, a fresh localnet (anvil with 0.25 s blocks and
2 confirmations, the Solana localnet server with 100 ms slots, 4 attester processes, t = 3: a new
one each time, so no configuration inherits another's messages through the watchers or the gap
repair), fresh relayer processes (each replica with its own funded accounts, relay/devstack.py) on a
fresh store; then a burst of `--messages` messages each way (EVM -> Solana and Solana -> EVM) sent
at once. The figure is messages per second from the first send until every message is `confirmed`
in the store. Bounded: about a minute per configuration at the default size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solders.keypair import Keypair  # noqa: E402

from relay.config import load_config  # noqa: E402
from relay.devstack import Stack, messaging_stack  # noqa: E402
from relay.log import configure_logging  # noqa: E402
from relay.sdk import TesseraClient  # noqa: E402
from relay.store import Stage, Store  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402


async def wait_confirmed(db: str, ids: list[bytes], timeout: float) -> float:
    store = await Store.open(db, replica="bench-observer")
    try:
        deadline = time.monotonic() + timeout
        pending = set(ids)
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(ids)} messages not confirmed after {timeout} s")
            for mid in list(pending):
                record = await store.get(mid)
                if record is not None and record.stage is Stage.CONFIRMED:
                    pending.discard(mid)
            if pending:
                await asyncio.sleep(0.05)
        return time.time()
    finally:
        await store.close()


async def submissions_by_replica(db: str, ids: list[bytes]) -> Counter:
    store = await Store.open(db, replica="bench-observer")
    try:
        wanted = set(ids)
        return Counter(s.replica for s in await store.submissions() if s.message_id in wanted)
    finally:
        await store.close()


async def one_run(stack: Stack, label: str, db: str, replicas: int, messages: int, receiver_evm: bytes) -> dict:
    names = [f"{label}-{i}" for i in range(1, replicas + 1)]
    for name in names:
        await stack.start_relayer(name, db=db, replica=name)
    try:
        async with TesseraClient.from_config(stack.config_path) as client:
            started = time.time()
            sends = [client.send("evm", "solana", bytes(Keypair().pubkey()), f"{label} {i}".encode())
                     for i in range(messages)]
            sends += [client.send("solana", "evm", receiver_evm, f"{label} {i}".encode()) for i in range(messages)]
            ids = [sent.message_id for sent in await asyncio.gather(*sends)]
            sent = time.time()
            done = await wait_confirmed(db, ids, timeout=60 + 3 * len(ids))
        split = await submissions_by_replica(db, ids)
    finally:
        for name in names:
            stack.relayers.pop(name).stop()
    return {"label": label, "replicas": replicas, "messages": len(ids), "send_s": sent - started,
            "total_s": done - started, "rate": len(ids) / (done - started),
            "split": " / ".join(str(split.get(n, 0)) for n in names)}


async def run(messages: int, runs: list[tuple[str, int]]) -> list[dict]:
    postgres = PostgresServer.start() if any(engine == "postgresql" for engine, _ in runs) else None
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="tessera-bench-replicas-") as tmp:
            for index, (engine, replicas) in enumerate(runs, 1):
                label = f"{'pg' if engine == 'postgresql' else 'sqlite'}{replicas}x{index}"
                async with messaging_stack(Path(tmp) / label, relayer=False) as stack:
                    config = load_config(stack.config_path)
                    receiver_evm = bytes.fromhex(config.chains["evm"].contracts["RecordingReceiver"][2:])
                    if engine == "postgresql":
                        assert postgres is not None
                        db = postgres.create_database(f"bench_{label}")
                    else:
                        db = str(stack.state_dir / f"relayer-{label}.db")
                    result = await one_run(stack, label, db, replicas, messages, receiver_evm)
                    result["engine"] = engine
                    results.append(result)
                    print(f"{engine:>10} × {replicas}: {result['messages']} messages ({messages} each way) sent in "
                          f"{result['send_s']:.2f} s, all confirmed after {result['total_s']:.2f} s "
                          f"({result['total_s'] - result['send_s']:.2f} s after the last send) = "
                          f"{result['rate']:.1f} messages/s; submissions per replica {result['split']}; "
                          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        if postgres is not None:
            postgres.stop()
    return results


def parse_run(text: str) -> tuple[str, int]:
    engine, _, count = text.partition(":")
    if engine not in ("sqlite", "postgresql") or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sqlite:N or postgresql:N")
    if engine == "sqlite" and int(count) != 1:
        raise argparse.ArgumentTypeError("SQLite holds one relayer's store: sqlite:1 only")
    return engine, int(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30, help="messages each way per configuration")
    parser.add_argument("--runs", nargs="+", type=parse_run,
                        default=[("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 3)])
    args = parser.parse_args()
    configure_logging("warning")
    started = time.monotonic()
    asyncio.run(run(args.messages, args.runs))
    print(f"bench time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
