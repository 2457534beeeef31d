"""End-to-end messaging latency and throughput on the localnet, next to each chain's floor.

    .venv/bin/python bench/e2e.py [--messages 20] [--burst 40]

Starts the whole stack on free ports (anvil with 0.25 s blocks and 2 confirmations; the Solana
localnet server with 100 ms slots and finality 4 slots behind; 4 attester processes, t = 3; one
relayer process), then per direction:
- latency: `--messages` messages one after another; per stage from the relayer's store:
  source inclusion -> observed (final on the source) -> t partials combined -> submitted ->
  confirmed (final on the destination);
- throughput: `--burst` messages sent at once, messages per second until all are confirmed;
- floor: one raw transaction round trip on each chain in the same run (EVM: transfer to receipt;
  Solana: transfer to `confirmed`), and each chain's finality wait.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def run(messages: int, burst: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        async with messaging_stack(Path(tmp)) as stack:
            config = load_config(stack.config_path)
            db = config.relayer.db
            receiver_evm = bytes.fromhex(config.chains["evm"].contracts["RecordingReceiver"][2:])
            floor = await floors(config)
            print(f"floor: EVM transfer -> receipt {floor['evm'] * 1000:.1f} ms (0.25 s blocks); "
                  f"Solana transfer -> confirmed {floor['solana'] * 1000:.1f} ms (100 ms slots)")
            print("finality waits by configuration: EVM 2 confirmations = ~0.5 s; Solana finalized = 4 slots = ~0.4 s")
            async with TesseraClient.from_config(stack.config_path) as client:
                for src, dst, receiver in (("evm", "solana", None), ("solana", "evm", receiver_evm)):
                    sent_at, ids = [], []
                    for i in range(messages):
                        target = receiver or bytes(Keypair().pubkey())
                        sent = await client.send(src, dst, target, f"bench {i}".encode())
                        sent_at.append(time.time())  # the send returns once the source tx is included
                        ids.append(sent.message_id)
                        await wait_confirmed(db, [sent.message_id])
                    stages = stage_times(db, ids)
                    print(f"\n{src} -> {dst}: latency per stage ({messages} messages, one at a time)")
                    print(row("included -> observed (final)", [o - s for s, (o, *_ ) in zip(sent_at, stages)]))
                    print(row("observed -> t partials combined", [g - o for o, g, _, _ in stages]))
                    print(row("combined -> submitted", [u - g for _, g, u, _ in stages]))
                    print(row("submitted -> confirmed (final)", [c - u for _, _, u, c in stages]))
                    print(row("total: included -> confirmed", [c - s for s, (_, _, _, c) in zip(sent_at, stages)]))

                    burst_ids = []
                    started = time.time()
                    sends = [client.send(src, dst, receiver or bytes(Keypair().pubkey()), f"burst {i}".encode())
                             for i in range(burst)]
                    for sent in await asyncio.gather(*sends):
                        burst_ids.append(sent.message_id)
                    done = await wait_confirmed(db, burst_ids)
                    print(f"  sustained: {burst} messages sent at once, all confirmed after {done - started:.2f} s "
                          f"= {burst / (done - started):.1f} messages/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--burst", type=int, default=40)
    args = parser.parse_args()
    configure_logging("warning")
    asyncio.run(run(args.messages, args.burst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
