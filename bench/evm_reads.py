"""CPU and wall time per call of the EVM adapter's hot reads on a real anvil: stock web3 (the path
the adapter took before: web3's AsyncHTTPProvider, its middleware and result formatters) against the
adapter's lean path (adapters/evm/rpc.py), in the same run, on the same chain state.

    .venv/bin/python bench/evm_reads.py [--messages 64] [--rounds 200] [--json out.json]

Set up: anvil, a committee's CommitteeVerifier, a Gateway, a receiver, and one deliverBatch of
`--messages` messages (its receipt holds that many MessageDelivered logs). Measured, per call:
- receipt: eth_getTransactionReceipt of the batch's transaction, one at a time;
- deliveryStatus: the eth_call `is_delivered` makes for a message (at the final block), one at a time;
- deliveryStatus x N at once: every message of the batch asked concurrently (the relayer's batch
  preparation) — stock: N web3 eth_calls; lean: what EvmAdapter.delivery_status_of does (one batch);
- batch status: `delivery_status(tx, message_id)` for every message of the batch at once (the
  relayer's confirm step) — stock: the receipt, head and block hash read once for all (shared in
  flight, as the adapter's Coalescer did), then each message scans the receipt's logs (the loop the
  adapter had); lean: EvmAdapter.delivery_status;
- send: a transaction prepared (gas given, one preflight eth_call) and sent through TxManager.
CPU is this process's (time.process_time); the node's own CPU for the same calls is shown too
(anvil's utime+stime from /proc), since the node shares the machine in production too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from eth_abi import decode as abi_decode  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3  # noqa: E402

import attest  # noqa: E402
from adapters.evm import rpc  # noqa: E402
from adapters.evm.gateway import EvmAdapter, deploy_gateway, deploy_recording_receiver  # noqa: E402
from adapters.evm.rpc import Coalescer, direct, to_hex  # noqa: E402
from adapters.evm.tx import TxManager  # noqa: E402
from relay.batch import Batch  # noqa: E402
from relay.config import EvmChain  # noqa: E402
from relay.envelope import Envelope, address_to_bytes32  # noqa: E402
from relay.interfaces import DeliveryState, SignedBatch  # noqa: E402
from relay.protocol import MessageKind  # noqa: E402
from tests.support import evm  # noqa: E402
from bench.loadgen import cpu_seconds  # noqa: E402

DOMAIN = 31337
REMOTE = 424242
EPOCH = 1


def stock_client(url: str) -> AsyncWeb3:
    """The client rpc.make_client built before the lean path: web3's provider and default middleware."""
    return AsyncWeb3(AsyncHTTPProvider(url, exception_retry_configuration=None,
                                       request_kwargs={"timeout": aiohttp.ClientTimeout(total=10)}))


def node_cpu(pid: int) -> float:
    """The node's own CPU seconds so far (bench/loadgen.py cpu_seconds, without reaped children)."""
    seconds = cpu_seconds(pid, reaped=False)
    assert seconds is not None, f"process {pid} is gone"
    return seconds


class Meter:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rows: list[dict[str, Any]] = []

    async def measure(self, name: str, path: str, calls: int, run: Callable[[], Awaitable[Any]]) -> None:
        await run()  # warm (connections, caches of code objects)
        cpu, wall, node = time.process_time(), time.perf_counter(), node_cpu(self.pid)
        await run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        node = node_cpu(self.pid) - node
        self.rows.append({"read": name, "path": path, "calls": calls, "cpu_us": cpu / calls * 1e6,
                          "wall_us": wall / calls * 1e6, "node_cpu_us": node / calls * 1e6})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=64, help="messages in the delivered batch (at most 64)")
    parser.add_argument("--rounds", type=int, default=200, help="sequential calls per single-call measurement")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    if args.messages < 2 or args.rounds < 1:
        parser.error("--messages must be at least 2 and --rounds at least 1")

    async with evm.anvil_with_committee(DOMAIN, EPOCH) as anvil:
        gateway = await deploy_gateway(anvil.w3, anvil.deployer, anvil.verifier, DOMAIN, fee=0)
        receiver = await deploy_recording_receiver(anvil.w3, anvil.deployer, gateway)
        chain = EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=[anvil.node.rpc_url], ws_urls=[],
                         confirmations=0, contracts={"Gateway": gateway})
        lean_adapter = EvmAdapter("evm", chain, anvil.node.private_keys[1], call_batch=args.messages)
        await lean_adapter.start()

        envelopes = [Envelope(MessageKind.TASK_REQUEST, n, REMOTE, b"\x00" * 12 + b"\x5e" * 20, DOMAIN,
                              address_to_bytes32(receiver), b"payload %d" % n) for n in range(args.messages)]
        batch = Batch.of(envelopes)
        digest = batch.digest(EPOCH)
        signature = attest.combine_signatures([attest.partial_sign(anvil.shares[i], digest) for i in range(3)])
        sent = (await lean_adapter.submit_batch(SignedBatch(batch, EPOCH, signature), list(range(args.messages))))[0]
        receipt = await lean_adapter._wait_receipt(sent, 30)
        assert receipt["status"] == 1, receipt
        ids = [e.message_id for e in envelopes]
        status = await lean_adapter.delivery_status(sent, message_id=ids[0])
        assert status.state is DeliveryState.CONFIRMED, status

        stock = stock_client(anvil.node.rpc_url)
        lean = rpc.make_client(anvil.node.rpc_url, 10, chain_id=DOMAIN)
        meter = Meter(anvil.node.pid)
        final = await lean_adapter.final_block()
        status_call = lambda i: {"to": gateway, "data": lean_adapter._delivery_status_selector + ids[i].hex()}  # noqa: E731
        n, rounds = args.messages, args.rounds

        # --- receipt
        async def stock_receipts() -> None:
            for _ in range(rounds):
                await stock.eth.get_transaction_receipt(sent)

        async def lean_receipts() -> None:
            for _ in range(rounds):
                await rpc.receipt(lean, sent)

        assert (await rpc.receipt(lean, sent))["logs"][3]["topics"] == list(
            (await stock.eth.get_transaction_receipt(sent))["logs"][3]["topics"])
        await meter.measure(f"receipt ({n} logs)", "stock web3", rounds, stock_receipts)
        await meter.measure(f"receipt ({n} logs)", "lean", rounds, lean_receipts)

        # --- one deliveryStatus eth_call at a time
        async def stock_status() -> None:
            for i in range(rounds):
                await stock.eth.call(status_call(i % n), block_identifier=final)

        async def lean_status() -> None:
            for i in range(rounds):
                await rpc.eth_call(lean, status_call(i % n), final)

        await meter.measure("deliveryStatus eth_call", "stock web3", rounds, stock_status)
        await meter.measure("deliveryStatus eth_call", "lean", rounds, lean_status)

        # --- every message's deliveryStatus at once (batch preparation's is_delivered)
        async def stock_status_burst() -> None:
            answers = await asyncio.gather(*(stock.eth.call(status_call(i), block_identifier=final)
                                             for i in range(n)))
            assert all(int.from_bytes(bytes(a)[-32:], "big") == 1 for a in answers)

        async def lean_status_burst() -> None:
            answers = await asyncio.gather(*(lean_adapter.delivery_status_of(i, final) for i in ids))
            assert answers == [1] * n

        await meter.measure(f"deliveryStatus x{n} at once", "stock web3", n, stock_status_burst)
        await meter.measure(f"deliveryStatus x{n} at once", "lean (1 batch)", n, lean_status_burst)

        # --- every message's delivery status from the batch transaction (the confirm step)
        gateway_address = to_checksum_address(gateway)
        topic_delivered = lean_adapter._topic_delivered

        shared = Coalescer()  # the adapter before shared reads in flight too (receipt, head, block hash)

        async def stock_confirm_one(message_id: bytes) -> bool:  # the adapter's loop before
            got = await shared.run("receipt", lambda: stock.eth.get_transaction_receipt(sent))
            await shared.run("head", lambda: stock.eth.block_number)
            block = await shared.run("block", lambda: stock.eth.get_block(int(got["blockNumber"])))
            assert bytes(block["hash"]) == bytes(got["blockHash"])
            for entry in got["logs"]:
                topics = entry["topics"]
                if (to_checksum_address(entry["address"]) == gateway_address and topics
                        and to_hex(topics[0]) == topic_delivered):
                    if bytes(topics[1]) != message_id:
                        continue
                    (_nonce, handled) = abi_decode(["uint64", "bool"], bytes(entry["data"]))
                    return bool(handled)
            return False

        async def stock_confirm() -> None:
            assert all(await asyncio.gather(*(stock_confirm_one(i) for i in ids)))

        async def lean_confirm() -> None:
            lean_adapter.tx._receipts.clear()  # each run reads the receipt again
            lean_adapter._delivered_in.clear()
            states = await asyncio.gather(*(lean_adapter.delivery_status(sent, message_id=i) for i in ids))
            assert all(s.state is DeliveryState.CONFIRMED for s in states), states[0]

        await meter.measure(f"batch status x{n} at once", "stock web3", n, stock_confirm)
        await meter.measure(f"batch status x{n} at once", "lean", n, lean_confirm)

        # --- sending a transaction (gas given, one preflight eth_call; fees shared for fee_ttl)
        to = Account.create().address
        sends = max(10, rounds // 10)

        def sender(w3: AsyncWeb3, key: str) -> Callable[[], Awaitable[None]]:
            manager = TxManager(direct(w3), Account.from_key(key), name="bench")

            async def run() -> None:
                for _ in range(sends):
                    await manager.send(await manager.transaction(to, "0x", 1, gas=21_000, preflight=True))
            return run

        await meter.measure("send a transaction", "stock web3", sends, sender(stock, anvil.node.private_keys[2]))
        await meter.measure("send a transaction", "lean", sends, sender(lean, anvil.node.private_keys[3]))

        await stock.provider.disconnect()
        await lean.provider.disconnect()
        await lean_adapter.close()

    # anvil's CPU comes in /proc ticks (10 ms): per call it is coarse, and 0 means "under one tick in all".
    print(f"{'read':32} {'path':16} {'calls':>5} {'cpu us/call':>12} {'wall us/call':>13} {'anvil cpu us/call':>18}")
    for row in meter.rows:
        print(f"{row['read']:32} {row['path']:16} {row['calls']:>5} {row['cpu_us']:>12.0f} {row['wall_us']:>13.0f} "
              f"{row['node_cpu_us']:>18.0f}")
    by_read: dict[str, list[dict[str, Any]]] = {}
    for row in meter.rows:
        by_read.setdefault(row["read"], []).append(row)
    print()
    for read, (before, after) in by_read.items():
        node = (f"anvil cpu x{before['node_cpu_us'] / after['node_cpu_us']:.1f} less"
                if after["node_cpu_us"] and before["node_cpu_us"] else "anvil cpu: too few /proc ticks to compare")
        print(f"{read:32} cpu x{before['cpu_us'] / after['cpu_us']:.1f} less, "
              f"wall x{before['wall_us'] / after['wall_us']:.1f} less, {node}")
    if args.json:
        args.json.write_text(json.dumps(meter.rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
