"""Benchmark: the Solana localnet server next to anvil, same machine, same run, same HTTP client.

    .venv/bin/python bench/localnet_rpc.py [--reads 2000] [--sends 300] [--concurrency 16]

Figures: requests per second (one client in a loop, and `--concurrency` clients at once) and p50/p99
latency of a cheap read (getLatestBlockhash / eth_blockNumber) and of a send plus confirmation
(sendTransaction then polling getSignatureStatuses until processed, and until confirmed; for anvil
eth_sendRawTransaction then polling eth_getTransactionReceipt, automine). Raw JSON-RPC over one aiohttp
session on both sides, so client-library overhead is left out. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account as EthAccount  # noqa: E402
from solders.hash import Hash  # noqa: E402
from solders.instruction import AccountMeta, Instruction  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.message import Message  # noqa: E402
from solders.pubkey import Pubkey  # noqa: E402
from solders.transaction import VersionedTransaction  # noqa: E402

from adapters.solana_localnet.testing import running_solana_localnet  # noqa: E402
from relay.ports import free_port  # noqa: E402

ANVIL = ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil dev account 0
MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
POLL_S = 0.002


class Rpc:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url, self._id = session, url, 0

    async def __call__(self, method: str, params: list[Any] | None = None) -> Any:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or []}
        async with self.session.post(self.url, json=body) as resp:
            reply = await resp.json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]


def _free_port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


async def _timed(
    n: int, op: Callable[[int], Awaitable[None]], before: Callable[[], Awaitable[None]] | None = None
) -> tuple[float, list[float]]:
    latencies = []
    for i in range(n):
        if before is not None:
            await before()  # not timed
        t0 = time.perf_counter()
        await op(i)
        latencies.append(time.perf_counter() - t0)
    return n / sum(latencies), latencies  # sequential: time spent in the operations only


async def _concurrent_rps(n: int, concurrency: int, op: Callable[[int], Awaitable[None]]) -> float:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


def _row(name: str, rps: float, latencies: list[float], rps_conc: float | None = None) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    conc = f"{rps_conc:10.0f}" if rps_conc is not None else f"{'-':>10}"
    return f"| {name:<76} | {rps:8.0f} | {conc} | {p50:8.2f} | {p99:8.2f} |"


async def bench_solana(reads: int, sends: int, concurrency: int, slot_ms: int) -> list[str]:
    rows = []
    async with running_solana_localnet(slot_ms=slot_ms, finality_slots=32) as net, aiohttp.ClientSession() as session:
        rpc = Rpc(session, net.rpc_url)
        for _ in range(50):  # warm-up
            await rpc("getLatestBlockhash", [{"commitment": "processed"}])
        rps, lat = await _timed(reads, lambda i: rpc("getLatestBlockhash", [{"commitment": "processed"}]))
        conc = await _concurrent_rps(reads, concurrency, lambda i: rpc("getLatestBlockhash", [{"commitment": "processed"}]))
        rows.append(_row("solana getLatestBlockhash", rps, lat, conc))

        payer = Keypair()
        sig = await rpc("requestAirdrop", [str(payer.pubkey()), 1000 * 10**9])
        while not (await rpc("getSignatureStatuses", [[sig]]))["value"][0]:
            await asyncio.sleep(0.01)

        async def send_and_confirm(i: int, level: str) -> None:
            blockhash = (await rpc("getLatestBlockhash", [{"commitment": "processed"}]))["value"]["blockhash"]
            ix = Instruction(MEMO, f"bench {level} {i}".encode(), [AccountMeta(payer.pubkey(), True, False)])
            tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), Hash.from_string(blockhash)), [payer])
            sig = await rpc("sendTransaction", [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}])
            wanted = ("processed", "confirmed", "finalized")[("processed", "confirmed", "finalized").index(level):]
            while True:
                status = (await rpc("getSignatureStatuses", [[sig]]))["value"][0]
                if status and status["confirmationStatus"] in wanted:
                    return
                await asyncio.sleep(POLL_S)

        rps, lat = await _timed(sends, lambda i: send_and_confirm(i, "processed"))
        rows.append(_row("solana getLatestBlockhash+sendTransaction+getSignatureStatuses (processed)", rps, lat))
        confirmed_n = max(10, sends // 10)
        # A random pause first: otherwise every send lands just after a slot boundary and waits a whole slot.
        jitter = lambda: asyncio.sleep(random.uniform(0, slot_ms / 1000))  # noqa: E731
        rps, lat = await _timed(confirmed_n, lambda i: send_and_confirm(i, "confirmed"), jitter)
        rows.append(_row(f"solana same, until confirmed (slot {slot_ms} ms, n={confirmed_n})", rps, lat))
    return rows


async def bench_anvil(reads: int, sends: int, concurrency: int) -> list[str]:
    if not ANVIL.exists():
        return [f"| anvil not found at {ANVIL}: run npm install |"]
    port = _free_port()
    proc = subprocess.Popen([str(ANVIL), "--port", str(port), "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        async with aiohttp.ClientSession() as session:
            rpc = Rpc(session, f"http://127.0.0.1:{port}")
            for _ in range(200):
                try:
                    await rpc("eth_chainId")
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            for _ in range(50):
                await rpc("eth_blockNumber")
            rps, lat = await _timed(reads, lambda i: rpc("eth_blockNumber"))
            conc = await _concurrent_rps(reads, concurrency, lambda i: rpc("eth_blockNumber"))
            rows.append(_row("anvil eth_blockNumber", rps, lat, conc))

            account = EthAccount.from_key(ANVIL_KEY)
            chain_id = int(await rpc("eth_chainId"), 16)
            nonce = int(await rpc("eth_getTransactionCount", [account.address, "pending"]), 16)
            gas_price = int(await rpc("eth_gasPrice"), 16) * 2

            async def send_and_receipt(i: int) -> None:
                tx = {
                    "to": "0x000000000000000000000000000000000000dEaD",
                    "value": 1,
                    "gas": 21_000,
                    "gasPrice": gas_price,
                    "nonce": nonce + i,
                    "chainId": chain_id,
                }
                raw = account.sign_transaction(tx).raw_transaction
                tx_hash = await rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
                while await rpc("eth_getTransactionReceipt", [tx_hash]) is None:
                    await asyncio.sleep(POLL_S)

            rps, lat = await _timed(sends, send_and_receipt)
            rows.append(_row("anvil eth_sendRawTransaction+receipt (automine)", rps, lat))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slot-ms", type=int, default=400)
    args = parser.parse_args()
    rows = await bench_solana(args.reads, args.sends, args.concurrency, args.slot_ms)
    rows += await bench_anvil(args.reads, args.sends, args.concurrency)
    header = f"| {'operation':<76} | {'req/s':>8} | {'req/s x' + str(args.concurrency):>10} | {'p50 ms':>8} | {'p99 ms':>8} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows:
        print(row)
    print(f"(reads={args.reads}, sends={args.sends}, one aiohttp session per node, {time.strftime('%Y-%m-%d %H:%M:%S')})")


if __name__ == "__main__":
    asyncio.run(main())
