"""Benchmark: reading a burst of Solana source transactions with follow_address, the way the relayer
and every attester read the Tessera program's sends, one getTransaction per HTTP request (the old way:
READ_AHEAD 16 concurrent single requests) against JSON-RPC batches (the new way: SolanaRpc.transaction
coalescing into TX_BATCH-sized batches, TX_BATCHES_AT_ONCE in flight). Same run, same localnet.

    .venv/bin/python bench/solana_source_read.py [--transactions 500] [--rounds 2] [--readers 5]

A localnet server subprocess (`python -m adapters.solana_localnet`) takes `--transactions` System
transfers to one address (sent raw, not timed); then, per round and per way, `--readers` followers at
once (the relayer and 4 attesters each follow the program), each with its own SolanaRpc, follow that
address from the start at `finalized` until each has read every transaction, each read a base64
getTransaction as SolanaAdapter._observations asks it. One untimed pass first, so the server's
encoded-answer cache is warm for both ways alike. Printed per run: transactions read per second (all
readers), the client's CPU seconds (this process) and the server's (its /proc stat), and both per
transaction read. Not a test: the only check is that each reader read every transaction, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solana.rpc.commitment import Finalized  # noqa: E402
from solders.hash import Hash  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.message import Message  # noqa: E402
from solders.signature import Signature  # noqa: E402
from solders.system_program import TransferParams, transfer  # noqa: E402
from solders.transaction import VersionedTransaction  # noqa: E402

from adapters.solana import rpc as solana_rpc  # noqa: E402
from adapters.solana.rpc import SolanaRpc, follow_address  # noqa: E402
from adapters.solana_localnet.testing import running_solana_localnet  # noqa: E402

OLD_READ_AHEAD = 16  # follow_address's read-ahead before batches


async def _call(session: aiohttp.ClientSession, url: str, method: str, params: list) -> object:
    async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) as resp:
        reply = await resp.json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


async def send_transfers(url: str, count: int) -> tuple[Keypair, list[str]]:
    """`count` transfers from a funded payer to a fresh target, confirmed; the target and signatures."""
    payer, target = Keypair(), Keypair()
    async with aiohttp.ClientSession() as session:
        await _call(session, url, "requestAirdrop", [str(payer.pubkey()), 10**12])
        blockhash = Hash.from_string((await _call(session, url, "getLatestBlockhash", [{"commitment": "confirmed"}]))[
            "value"]["blockhash"])
        signatures: list[str] = []
        semaphore = asyncio.Semaphore(32)

        async def send(i: int) -> None:
            ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=target.pubkey(), lamports=10**6 + i))
            tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), blockhash), [payer])
            async with semaphore:
                signatures.append(str(await _call(session, url, "sendTransaction", [
                    base64.b64encode(bytes(tx)).decode(), {"encoding": "base64", "skipPreflight": True}])))

        await asyncio.gather(*(send(i) for i in range(count)))
    return target, signatures


async def wait_finalized(rpc: SolanaRpc, target: Keypair, count: int) -> None:
    while len(await rpc.signatures_after(target.pubkey(), None, Finalized)) < count:
        await asyncio.sleep(0.1)


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def read_all(url: str, target: Keypair, count: int, way: str) -> list[str]:
    rpc = SolanaRpc("bench", [url], timeout=30.0)

    async def read_old(signature: Signature, _before: str) -> list[str] | None:
        tx = (await rpc.call("getTransaction", lambda c: c.get_transaction(
            signature, encoding="base64", commitment=Finalized, max_supported_transaction_version=0))).value
        return None if tx is None else [str(signature)]

    async def read_new(signature: Signature, _before: str) -> list[str] | None:
        tx = await rpc.transaction(signature, Finalized, encoding="base64")
        return None if tx is None else [str(signature)]

    saved = solana_rpc.READ_AHEAD
    solana_rpc.READ_AHEAD = OLD_READ_AHEAD if way == "old" else saved
    found: list[str] = []
    follower = follow_address(rpc, target.pubkey(), None, read_old if way == "old" else read_new,
                              commitment=Finalized, logs=None, poll_interval=0.05, idle_poll_interval=0.05,
                              what="bench")
    try:
        async for item in follower:
            found.append(item)
            if len(found) == count:
                break
    finally:
        await follower.aclose()
        solana_rpc.READ_AHEAD = saved
        await rpc.close()
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--readers", type=int, default=5)
    args = parser.parse_args()
    if args.transactions < 1 or args.rounds < 1 or args.readers < 1:
        parser.error("--transactions, --rounds and --readers must be at least 1")
    async with running_solana_localnet(slot_ms=100, finality_slots=2) as net:
        target, sent = await send_transfers(net.rpc_url, args.transactions)
        rpc = SolanaRpc("bench", [net.rpc_url])
        await wait_finalized(rpc, target, args.transactions)
        in_order = [str(s) for s, _ in await rpc.signatures_after(target.pubkey(), None, Finalized)]
        await rpc.close()
        assert sorted(in_order) == sorted(sent)
        print(f"{args.transactions} transfers finalized; reading them with follow_address "
              f"(old: READ_AHEAD {OLD_READ_AHEAD}, one getTransaction per request; new: READ_AHEAD "
              f"{solana_rpc.READ_AHEAD}, batches of {solana_rpc.TX_BATCH})")
        print(f"{args.readers} readers at once")
        print(f"{'way':<5} {'tx/s':>8} {'wall s':>8} {'client CPU s':>13} {'server CPU s':>13} "
              f"{'client ms/tx':>13} {'server ms/tx':>13}")
        await read_all(net.rpc_url, target, args.transactions, "new")  # warm-up, untimed
        for _ in range(args.rounds):
            for way in ("old", "new"):
                server_before, client_before, started = server_cpu(net.pid), time.process_time(), time.perf_counter()
                reads = asyncio.gather(*(read_all(net.rpc_url, target, args.transactions, way)
                                         for _ in range(args.readers)))
                try:
                    everything = await asyncio.wait_for(reads, 300)
                except asyncio.TimeoutError:
                    raise SystemExit(f"{way}: the readers did not read all {args.transactions} transactions "
                                     "within 300 s") from None
                wall = time.perf_counter() - started
                client = time.process_time() - client_before
                server = server_cpu(net.pid) - server_before
                for found in everything:
                    if found != in_order:
                        raise SystemExit(f"{way}: read {len(found)} transactions, not the {len(in_order)} in order")
                n = args.transactions * args.readers
                print(f"{way:<5} {n / wall:>8.0f} {wall:>8.2f} {client:>13.2f} {server:>13.2f} "
                      f"{1000 * client / n:>13.3f} {1000 * server / n:>13.3f}")


if __name__ == "__main__":
    asyncio.run(main())
