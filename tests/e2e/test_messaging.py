"""The messaging layer end to end on real processes: anvil, the Solana localnet server, attester
processes and relayer processes started as an operator starts them, driven through the SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from aiohttp import web
from solders.keypair import Keypair

from relay.config import load_config
from relay.sdk import TesseraClient
from tests.e2e.stack import messaging_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def stages(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return {row[0].hex(): row[1] for row in conn.execute("SELECT message_id, stage FROM messages")}


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def test_evm_to_solana_and_back_with_one_attester_down(tmp_path: Path) -> None:
    async with messaging_stack(tmp_path, attesters=(1, 2, 3)) as stack:  # member 4 is down
        config = load_config(stack.config_path)
        receiver_evm = bytes.fromhex(config.chains["evm"].contracts["RecordingReceiver"][2:])
        receiver_sol = bytes(Keypair().pubkey())
        async with TesseraClient.from_config(stack.config_path) as client:
            to_solana = await client.send("evm", "solana", receiver_sol, b"task: summarise block 42")
            to_evm = await client.send("solana", "evm", receiver_evm, b"result: 0.93 positive")
            assert to_solana.envelope.src_domain == config.chains["evm"].domain
            assert to_evm.envelope.nonce == 0
            delivered = await asyncio.gather(client.wait_delivered(to_solana, timeout=90),
                                             client.wait_delivered(to_evm, timeout=90))
            assert [d.chain for d in delivered] == ["solana", "evm"]
            assert all(d.tx for d in delivered)
            # Off-chain verification: the committee's signature over each message checks out.
            for sent in (to_solana, to_evm):
                epoch, signature = await client.committee_signature(sent)
                assert client.verify(sent.envelope, epoch, signature)
                forged = bytes(signature[:-1]) + bytes([signature[-1] ^ 1])
                assert not client.verify(sent.envelope, epoch, forged)
        # The relayer's own record reaches `confirmed` once it sees its transaction final.
        db = load_config(stack.config_path).relayer.db
        ids = {to_solana.message_id.hex(), to_evm.message_id.hex()}
        await wait_for(lambda: all(stages(db).get(i) == "confirmed" for i in ids), timeout=30)
