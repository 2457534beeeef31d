"""Anvil CPU and wall time per deliverBatch transaction build (batch of 32 by default): the gas limit
from eth_estimateGas (the adapter's way before: a binary search that executes the whole batch, its
pairing and every handler, ~15-20 times) against the measured limit (EvmAdapter._batch_transaction:
one eth_createAccessList and one eth_call preflight), in the same run, on the same chain state.

    .venv/bin/python bench/evm_batch_gas.py [--size 32] [--rounds 10] [--burn 0] [--json out.json]

Set up: anvil, a committee's CommitteeVerifier, a Gateway and a RecordingReceiver (stores every
message; `--burn` extra keccak iterations per handler), then `--rounds` signed batches of `--size`
messages with 100-byte payloads. Each batch's transaction is built both ways, alternately (nothing is
sent, so both see the same state). Measured per build: anvil's CPU (utime+stime from /proc/<pid>/stat,
10 ms ticks), wall time, and the gas limit each way gives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from web3.exceptions import ContractLogicError  # noqa: E402

import attest  # noqa: E402
from adapters.evm import deploy as evm_deploy  # noqa: E402
from adapters.evm.gateway import EvmAdapter, deliver_batch_data, deploy_gateway, deploy_recording_receiver  # noqa: E402
from adapters.evm.rpc import decode_revert, revert_data  # noqa: E402
from relay.batch import Batch  # noqa: E402
from relay.config import EvmChain  # noqa: E402
from relay.envelope import Envelope, address_to_bytes32  # noqa: E402
from relay.protocol import MessageKind  # noqa: E402
from tests.support import evm  # noqa: E402
from bench.loadgen import cpu_seconds  # noqa: E402

DOMAIN = 31337
REMOTE = 424242
EPOCH = 1


def node_cpu(pid: int) -> float:
    """The node's own CPU seconds so far (bench/loadgen.py cpu_seconds, without reaped children)."""
    seconds = cpu_seconds(pid, reaped=False)
    assert seconds is not None, f"process {pid} is gone"
    return seconds


async def run(size: int, rounds: int, burn: int) -> dict[str, Any]:
    async with evm.anvil_with_committee(DOMAIN, EPOCH) as anvil:
        gateway = await deploy_gateway(anvil.w3, anvil.deployer, anvil.verifier, DOMAIN, fee=0)
        receiver = await deploy_recording_receiver(anvil.w3, anvil.deployer, gateway)
        if burn:
            recording = evm_deploy.contract(anvil.w3, "RecordingReceiver", receiver)
            await evm_deploy.transact(anvil.w3, anvil.deployer, recording.functions.setBurn(burn))
        chain = EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=[anvil.node.rpc_url], ws_urls=[],
                         confirmations=0, contracts={"Gateway": gateway})
        adapter = EvmAdapter("evm", chain, anvil.node.private_keys[1])
        pid = anvil.node.pid
        assert pid is not None
        try:
            # Warm both paths (constants, block gas limit, fees, connections) on a batch of their own.
            datas = []
            for r in range(rounds + 1):
                envelopes = [Envelope(MessageKind.TASK_REQUEST, r * size + i, REMOTE, b"\x00" * 12 + b"\x5e" * 20,
                                      DOMAIN, address_to_bytes32(receiver), b"p" * 100) for i in range(size)]
                batch = Batch.of(envelopes)
                signature = attest.combine_signatures(
                    [attest.partial_sign(anvil.shares[i], batch.digest(EPOCH)) for i in range(3)])
                datas.append(deliver_batch_data(adapter._gateway, batch, EPOCH, signature))
            try:
                await adapter.tx.transaction(gateway, datas[0])
            except ContractLogicError as exc:
                reason = decode_revert(adapter.delivery_errors, revert_data(exc))
                raise SystemExit(f"the gateway refuses the batch ({reason}): too heavy for a block? "
                                 "lower --burn or --size") from None
            await adapter._batch_transaction(datas[0])
            ways = {
                "eth_estimateGas": lambda data: adapter.tx.transaction(gateway, data),
                "eth_createAccessList + eth_call": adapter._batch_transaction,
            }
            samples: dict[str, dict[str, list[float]]] = {w: {"cpu": [], "wall": [], "gas": []} for w in ways}
            for data in datas[1:]:
                for name, build in ways.items():
                    cpu0, wall0 = node_cpu(pid), time.perf_counter()
                    tx = await build(data)
                    wall, cpu = time.perf_counter() - wall0, node_cpu(pid) - cpu0
                    samples[name]["cpu"].append(cpu)
                    samples[name]["wall"].append(wall)
                    samples[name]["gas"].append(tx["gas"])
        finally:
            await adapter.close()
    out: dict[str, Any] = {"size": size, "rounds": rounds, "burn": burn, "ways": {}}
    for name, s in samples.items():
        out["ways"][name] = {"anvil_cpu_ms": 1000 * sum(s["cpu"]) / rounds, "wall_ms": 1000 * sum(s["wall"]) / rounds,
                             "gas_limit": int(sum(s["gas"]) / rounds)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32, help="messages per batch (1..32)")
    parser.add_argument("--rounds", type=int, default=10, help="batches built each way")
    parser.add_argument("--burn", type=int, default=0, help="extra keccak iterations per handler")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if not 1 <= args.size <= 32:
        parser.error("--size must be 1..32 (Batch.MAX_SIZE)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.burn < 0:
        parser.error("--burn must be >= 0")
    result = asyncio.run(run(args.size, args.rounds, args.burn))
    print(f"deliverBatch of {result['size']} messages (RecordingReceiver, burn {result['burn']}), "
          f"{result['rounds']} builds each way, per build:")
    for name, w in result["ways"].items():
        print(f"  {name:34s} anvil cpu {w['anvil_cpu_ms']:7.1f} ms   wall {w['wall_ms']:7.1f} ms   "
              f"gas limit {w['gas_limit']:,}")
    old, new = result["ways"].values()
    if new["anvil_cpu_ms"]:
        print(f"  anvil cpu {old['anvil_cpu_ms'] / new['anvil_cpu_ms']:.1f}x less, "
              f"wall {old['wall_ms'] / new['wall_ms']:.1f}x less")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
