"""`relay demo` (what `make demo` runs): the whole stack on a fresh localnet, explained as it runs.

1. real chains: anvil + the Solana localnet server, contracts and program deployed;
2. a 3-of-4 attester committee and a relayer, each its own process;
3. messages sent through the SDK in both directions, each followed stage by stage to delivery,
   with the committee's signature checked off-chain as well;
4. a summary; everything is stopped. Exit code 0 only if every message was delivered and verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from relay.config import load_config
from relay.devstack import messaging_stack
from relay.localnet import read_state, summary

MESSAGES = [
    ("evm", "solana", b"task: classify the sentiment of 'markets rallied on strong earnings'"),
    ("solana", "evm", b"result: positive (compound 0.62), worker 7xKX..."),
    ("evm", "solana", b"proof: re-executed by 3 of 4 attesters, output hash matches"),
    ("solana", "evm", b"data: ETH/USD 3412.55 +/- 0.8 @ round 1042"),
]


def _stage(db: Path, message_id: bytes) -> tuple[str, str]:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT stage, reason FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    except sqlite3.Error:
        return "-", ""
    return row if row else ("sent", "")


async def run_demo() -> int:
    from adapters.localnet import smoke
    from relay.sdk import TesseraClient

    if "TESSERA_LOG_LEVEL" not in os.environ:  # the demo narrates; logs only for problems
        from relay.log import configure_logging

        configure_logging("warning")
    print("Tessera demo\n============\n1. Starting real chains (anvil + Solana SVM localnet), deploying, dealing a "
          "3-of-4 committee,\n   and starting 4 attester processes and a relayer process...", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tessera-demo-") as tmp:
        async with messaging_stack(Path(tmp)) as stack:
            print(f"   up in {time.perf_counter() - started:.1f}s\n")
            print("\n".join("   " + line for line in summary(read_state(stack.state_dir), stack.state_dir).splitlines()))

            print("\n2. Checking each deployed piece on its own:")
            for check, outcome in await smoke(stack.state_dir):
                print(f"   {check:<48} {outcome}")

            config = load_config(stack.config_path)
            db = config.relayer.db
            # On Solana a receiver is any account that reads the delivery receipt; use a fresh key.
            receivers = {"evm": bytes.fromhex(config.chains["evm"].contracts["RecordingReceiver"][2:]),
                         "solana": hashlib.sha256(b"tessera demo receiver").digest()}
            print("\n3. Sending messages through the SDK; the relayer carries them:\n")
            async with TesseraClient.from_config(stack.config_path) as client:
                sent = []
                for src, dst, payload in MESSAGES:
                    message = await client.send(src, dst, receivers[dst], payload)
                    sent.append((message, time.perf_counter()))
                done: dict[bytes, tuple[float, str | None]] = {}
                deadline = time.monotonic() + 120
                last_table = ""
                while len(done) < len(sent) and time.monotonic() < deadline:
                    for message, t0 in sent:
                        if message.message_id not in done and await client.is_delivered(message):
                            delivery = await client.wait_delivered(message, timeout=5)
                            done[message.message_id] = (time.perf_counter() - t0, delivery.tx)
                    table = "\n".join(
                        f"   {m.id_hex[:14]}  {m.source_chain:>6} -> {('solana' if m.source_chain == 'evm' else 'evm'):<6}"
                        f"  {_stage(db, m.message_id)[0]:<10}"
                        + (f" delivered in {done[m.message_id][0]:.2f}s" if m.message_id in done else "")
                        for m, _ in sent)
                    if table != last_table:
                        print(table + "\n")
                        last_table = table
                    await asyncio.sleep(0.2)

                print("4. Summary")
                ok = True
                for message, _ in sent:
                    if message.message_id not in done:
                        stage, reason = _stage(db, message.message_id)
                        print(f"   {message.id_hex[:14]}  NOT delivered (stage {stage}: {reason})")
                        ok = False
                        continue
                    epoch, signature = await client.committee_signature(message)
                    verified = client.verify(message.envelope, epoch, signature)
                    ok = ok and verified
                    latency, tx = done[message.message_id]
                    print(f"   {message.id_hex[:14]}  {message.source_chain:>6} nonce {message.envelope.nonce}  "
                          f"{latency:5.2f}s  dest tx {str(tx)[:18]}...  signature "
                          f"{'verified off-chain' if verified else 'DID NOT VERIFY'}")
    print(f"\n{'all messages delivered and their signatures verified' if ok else 'demo FAILED'}; "
          "everything stopped. (AI tasks and feeds come with their milestones: see README.)")
    return 0 if ok else 1
