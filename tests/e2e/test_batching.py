"""Batch delivery end to end on real processes (anvil, the Solana localnet server, 4 attester
processes, the relayer process with batching on): a burst both ways, the relayer SIGKILLed while a
batch is half way, restarted; every message delivered exactly once, by batches the chains recorded
(EVM Gateway.deliverBatch, Solana VerifyRoot + DeliverWithProof + CloseRoot)."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from relay.config import load_config
from relay.devstack import messaging_stack
from relay.sdk import TesseraClient
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PER_DIRECTION = 60


def _rows(db: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def _in_flight_batch_members(db: Path) -> int:
    """Messages of a signed batch the relayer has not confirmed yet (ready or submitted)."""
    return _rows(db, "SELECT count(*) FROM batch_members m JOIN messages g ON g.message_id = m.message_id "
                     "WHERE g.stage IN ('ready', 'submitted')")[0][0]


def _solana(rpc_url: str, method: str, *params) -> object:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    return requests.post(rpc_url, json=body, timeout=10).json()["result"]


def _successful_signatures(rpc_url: str, address: str) -> list[str]:
    return [e["signature"] for e in _solana(rpc_url, "getSignaturesForAddress", address) if e["err"] is None]


def _program_instruction_tags(rpc_url: str, signature: str, program: str) -> list[int]:
    """The first data byte of every top-level instruction of `program` in a transaction."""
    tx = _solana(rpc_url, "getTransaction", signature, {"encoding": "base64", "commitment": "confirmed",
                                                        "maxSupportedTransactionVersion": 0})
    message = VersionedTransaction.from_bytes(base64.b64decode(tx["transaction"][0])).message
    keys = [str(k) for k in message.account_keys]
    return [bytes(ix.data)[0] for ix in message.instructions if keys[ix.program_id_index] == program and ix.data]


async def test_a_batched_burst_both_ways_survives_a_kill_mid_batch_exactly_once(tmp_path: Path) -> None:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.evm import deploy as evm_deploy
    from adapters.solana.program import ProgramInstruction, receipt_address, root_address

    async with messaging_stack(tmp_path, relayer=False) as stack:
        # A stable replica name: the restarted relayer takes its own leases back at once (docs/DEPLOY.md).
        await stack.start_relayer("batcher", replica="batcher")
        config = load_config(stack.state_dir / "config-batcher.toml")
        evm, sol = config.chains["evm"], config.chains["solana"]
        assert config.relayer.batch_size == 32 and config.relayer.batch_wait_ms == 50  # the defaults: batching on
        db = Path(config.relayer.db)
        receiver_evm = bytes.fromhex(evm.contracts["RecordingReceiver"][2:])
        async with TesseraClient.from_config(stack.config_path) as client:
            async def burst(src: str, dst: str, receiver) -> list:
                return list(await asyncio.gather(*(client.send(src, dst, receiver(), f"{src}->{dst} {i}".encode())
                                                   for i in range(PER_DIRECTION))))

            t0 = time.monotonic()
            sending = asyncio.gather(burst("evm", "solana", lambda: bytes(Keypair().pubkey())),
                                     burst("solana", "evm", lambda: receiver_evm))
            # SIGKILL the relayer while a signed batch is half way: members ready or submitted, not confirmed.
            await wait_for(lambda: _in_flight_batch_members(db), timeout=60, interval=0.005,
                           what="a signed batch in flight")
            stack.relayers["batcher"].process.kill()
            stack.relayers["batcher"].process.wait()
            assert _in_flight_batch_members(db) > 0
            sent = [m for direction in await sending for m in direction]
            print(f"killed with {_in_flight_batch_members(db)} batch members in flight; sent all at {time.monotonic() - t0:.1f}s")
            await stack.start_relayer("batcher")
            ids = [m.message_id for m in sent]
            marks = ",".join("?" for _ in ids)
            await wait_for(lambda: _rows(db, f"SELECT count(*) FROM messages WHERE stage = 'confirmed' AND "
                                             f"message_id IN ({marks})", *ids)[0][0] == len(ids),
                           timeout=120, what="every message confirmed by the restarted relayer")
            print(f"all confirmed at {time.monotonic() - t0:.1f}s")

        roots = _rows(db, "SELECT root, src_domain, dst_domain, message_ids FROM batches")
        evm_roots = [bytes(r[0]) for r in roots if r[2] == evm.domain]
        sol_roots = [bytes(r[0]) for r in roots if r[2] == sol.domain]
        assert evm_roots and sol_roots, f"batches: {len(evm_roots)} to EVM, {len(sol_roots)} to Solana"

        # EVM, from the chain: exactly one MessageDelivered per message, the receiver ran once per
        # message, and deliverBatch transactions verified roots the committee signed.
        w3 = AsyncWeb3(AsyncHTTPProvider(evm.rpc_urls[0]))
        try:
            gateway = evm_deploy.contract(w3, "Gateway", evm.contracts["Gateway"])
            receiver = evm_deploy.contract(w3, "RecordingReceiver", evm.contracts["RecordingReceiver"])
            topic = w3.keccak(text="MessageDelivered(bytes32,uint32,uint64,bool)")
            logs = await w3.eth.get_logs({"address": gateway.address, "fromBlock": 0, "toBlock": "latest",
                                          "topics": [topic]})
            delivered = Counter(bytes(e["topics"][1]) for e in logs)
            to_evm = [m for m in sent if m.envelope.dst_domain == evm.domain]
            assert all(delivered[m.message_id] == 1 for m in to_evm), "a message delivered twice or never on EVM"
            assert [await gateway.functions.deliveryStatus(m.message_id).call() for m in to_evm] == [1] * len(to_evm)
            handled = [bytes((await receiver.functions.record(i).call())[0])
                       for i in range(await receiver.functions.count().call())]
            assert sorted(handled) == sorted(m.message_id for m in to_evm)
            root_topic = w3.keccak(text="RootVerified(bytes32,uint32,uint32,uint32)")
            verified = await w3.eth.get_logs({"address": gateway.address, "fromBlock": 0, "toBlock": "latest",
                                              "topics": [root_topic]})
            assert {bytes(e["topics"][1]) for e in verified} >= set(evm_roots[:1])
            selector = bytes(w3.keccak(text="deliverBatch(bytes32,uint32,bytes,bytes[])")[:4])
            batch_txs = [await w3.eth.get_transaction(e["transactionHash"]) for e in verified]
            assert any(bytes(tx["input"])[:4] == selector for tx in batch_txs), "no deliverBatch transaction"
            # Batches carried several messages each: fewer delivery transactions than messages.
            assert len({e["transactionHash"] for e in logs}) < len(to_evm)
        finally:
            await w3.provider.disconnect()

        # Solana, from the chain: one successful delivery per receipt; VerifyRoot ran for the roots,
        # messages went in DeliverWithProof, and the finished roots were closed (rent back).
        program = sol.program_id
        rpc = sol.rpc_urls[0]
        to_sol = [m for m in sent if m.envelope.dst_domain == sol.domain]
        proof_deliveries = 0
        for m in to_sol:
            landed = _successful_signatures(rpc, str(receipt_address(Pubkey.from_string(program), m.message_id)[0]))
            assert len(landed) == 1, f"0x{m.message_id.hex()}: {len(landed)} successful Solana deliveries"
            proof_deliveries += ProgramInstruction.DELIVER_WITH_PROOF in _program_instruction_tags(rpc, landed[0],
                                                                                                    program)
        assert proof_deliveries > 0
        verify_root_seen = 0
        for root in sol_roots:
            address = str(root_address(Pubkey.from_string(program), root))
            for signature in _successful_signatures(rpc, address):
                verify_root_seen += ProgramInstruction.VERIFY_ROOT in _program_instruction_tags(rpc, signature, program)
        assert verify_root_seen > 0, "no VerifyRoot on the Solana chain"

        def roots_closed() -> bool:
            return all(_solana(rpc, "getAccountInfo", str(root_address(Pubkey.from_string(program), r)),
                               {"encoding": "base64", "commitment": "confirmed"})["value"] is None for r in sol_roots)
        await wait_for(roots_closed, timeout=20, what="the relayer to close its Solana root accounts")
