"""solana-py (AsyncClient, SolanaWsClient) against the Solana localnet server running as a subprocess."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed, Finalized, Processed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solana.rpc.websocket_api import SolanaWsClient
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.errors import SendTransactionPreflightFailureMessage, UnsupportedTransactionVersionMessage
from solders.rpc.responses import AccountNotification, LogsNotification, SignatureNotification, SlotNotification
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionConfirmationStatus,
    TransactionErrorInstructionError,
)

from adapters.solana_localnet.testing import running_solana_localnet
from tests.support.solana import airdropped

pytestmark = pytest.mark.e2e

MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
SLOT_MS = 50
FINALITY = 4
POLL = 0.02
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def memo_ix(signer: Pubkey, text: bytes) -> Instruction:
    return Instruction(MEMO, text, [AccountMeta(signer, True, False)])


async def signed(client: AsyncClient, payer: Keypair, instructions: list[Instruction]) -> VersionedTransaction:
    blockhash = (await client.get_latest_blockhash(Processed)).value.blockhash
    return VersionedTransaction(Message.new_with_blockhash(instructions, payer.pubkey(), blockhash), [payer])


@pytest.fixture
async def localnet():
    async with running_solana_localnet(slot_ms=SLOT_MS, finality_slots=FINALITY) as net:
        yield net


async def test_transfer_with_memo_through_every_commitment(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client:
        payer = await airdropped(client, poll=POLL)
        recipient = Keypair().pubkey()
        blockhash = (await client.get_latest_blockhash(Processed)).value
        tx = VersionedTransaction(
            Message.new_with_blockhash(
                [
                    transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=recipient, lamports=2 * 10**9)),
                    memo_ix(payer.pubkey(), b"tessera says hi"),
                ],
                payer.pubkey(),
                blockhash.blockhash,
            ),
            [payer],
        )
        sig = (await client.send_transaction(tx)).value

        seen = {}
        for level, status in (
            (Processed, TransactionConfirmationStatus.Processed),
            (Confirmed, TransactionConfirmationStatus.Confirmed),
            (Finalized, TransactionConfirmationStatus.Finalized),
        ):
            resp = await client.confirm_transaction(
                sig, level, sleep_seconds=POLL, last_valid_block_height=blockhash.last_valid_block_height
            )
            got = resp.value[0]
            assert got is not None and got.err is None
            assert int(got.confirmation_status) >= int(status)
            seen[level] = got
        assert seen[Finalized].confirmations is None  # rooted, as a validator reports it
        tx_slot = seen[Finalized].slot

        # Balances at each commitment once finalized; context slots follow the commitment order.
        contexts = []
        for level in (Processed, Confirmed, Finalized):
            bal = await client.get_balance(recipient, level)
            assert bal.value == 2 * 10**9
            contexts.append(bal.context.slot)
        assert contexts[0] >= contexts[1] >= contexts[2] >= tx_slot

        sigs = (await client.get_signatures_for_address(recipient, commitment=Confirmed)).value
        assert [s.signature for s in sigs] == [sig]
        assert sigs[0].memo == "[15] tessera says hi"
        assert sigs[0].slot == tx_slot and sigs[0].err is None and sigs[0].block_time is not None

        got = (await client.get_transaction(sig, commitment=Confirmed)).value
        assert got is not None and got.slot == tx_slot
        meta = got.transaction.meta
        assert meta is not None and meta.err is None
        assert "Program log: tessera says hi" in meta.log_messages
        assert meta.compute_units_consumed > 0
        assert meta.fee == 5000
        assert meta.post_balances[1] - meta.pre_balances[1] == 2 * 10**9


async def test_finalized_reads_trail_processed(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client:
        payer = Keypair()
        sig = (await client.request_airdrop(payer.pubkey(), 5 * 10**9)).value
        await client.confirm_transaction(sig, Processed, sleep_seconds=POLL)
        # Right after execution the transaction is not final: finalized readers must not see it yet.
        finalized_tx = (await client.get_transaction(sig, commitment=Finalized)).value
        finalized_balance = (await client.get_balance(payer.pubkey(), Finalized)).value
        processed_balance = (await client.get_balance(payer.pubkey(), Processed)).value
        assert finalized_tx is None
        assert finalized_balance == 0
        assert processed_balance == 5 * 10**9
        await client.confirm_transaction(sig, Finalized, sleep_seconds=POLL)
        assert (await client.get_transaction(sig, commitment=Finalized)).value is not None
        assert (await client.get_balance(payer.pubkey(), Finalized)).value == 5 * 10**9


async def test_logs_subscription_sees_the_memo(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client, SolanaWsClient(localnet.ws_url) as ws:
        payer = await airdropped(client, poll=POLL)
        await ws.logs_subscribe(filter_=RpcTransactionLogsFilterMentions(payer.pubkey()), commitment=Confirmed)
        await ws.logs_subscribe(commitment=Processed)  # "all"
        tx = await signed(client, payer, [memo_ix(payer.pubkey(), b"over the socket")])
        sig = (await client.send_transaction(tx)).value

        received = []
        while len(received) < 2:
            note = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(note, LogsNotification)
            if note.result.value.signature == sig:
                received.append(note)
        assert all("Program log: over the socket" in n.result.value.logs for n in received)
        assert all(n.result.value.err is None for n in received)


async def test_preflight_failure_carries_logs(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client:
        payer = await airdropped(client, poll=POLL)
        bad = await signed(client, payer, [Instruction(MEMO, b"\xff\xfe", [])])  # memo must be UTF-8
        with pytest.raises(RPCException) as caught:
            await client.send_transaction(bad)
        error = caught.value.args[0]
        assert isinstance(error, SendTransactionPreflightFailureMessage)
        assert error.message.startswith("Transaction simulation failed")
        assert error.data.err is not None
        assert any("invalid utf-8" in line for line in error.data.logs)
        assert error.data.units_consumed > 0
        # Preflight failures never reach the ledger.
        assert (await client.get_signature_statuses([bad.signatures[0]])).value == [None]


async def test_signature_subscription_reports_a_failed_transaction(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client, SolanaWsClient(localnet.ws_url) as ws:
        payer = await airdropped(client, 10**9, poll=POLL)
        # More than the balance: the system program fails with Custom(1), the fee is still charged.
        tx = await signed(
            client, payer, [transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10**12))]
        )
        sig = tx.signatures[0]
        await ws.signature_subscribe(signature=sig, commitment=Confirmed)
        sent = (await client.send_transaction(tx, opts=TxOpts(skip_preflight=True))).value
        assert sent == sig
        note = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(note, SignatureNotification)
        err = note.result.value.err
        assert isinstance(err, TransactionErrorInstructionError)
        assert err.index == 0 and err.err == InstructionErrorCustom(1)

        # The same failure through the HTTP API, in Agave's error form.
        status = (await client.get_signature_statuses([sig])).value[0]
        assert status is not None and status.err == err
        fetched = (await client.get_transaction(sig, commitment=Confirmed)).value
        assert fetched.transaction.meta.err == err
        assert fetched.transaction.meta.fee == 5000

        # A subscription made after the fact is answered at once.
        await ws.signature_subscribe(signature=sig, commitment=Processed)
        late = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(late, SignatureNotification) and late.result.value.err == err


async def test_account_and_slot_subscriptions(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client, SolanaWsClient(localnet.ws_url) as ws:
        watched = Keypair().pubkey()
        await ws.account_subscribe(pubkey=watched, commitment=Confirmed, encoding="base64")
        await client.request_airdrop(watched, 3 * 10**9)
        note = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(note, AccountNotification)
        assert note.result.value.lamports == 3 * 10**9

        sub = await ws.slot_subscribe()
        slots = []
        while len(slots) < 3:
            note = await asyncio.wait_for(ws.recv(), 5)
            if isinstance(note, SlotNotification):
                slots.append(note.result.slot)
        assert slots == sorted(slots) and len(set(slots)) == 3
        await ws.unsubscribe(sub)


async def test_v0_transaction_needs_max_supported_version(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client:
        payer = await airdropped(client, poll=POLL)
        blockhash = (await client.get_latest_blockhash(Processed)).value.blockhash
        tx = VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [memo_ix(payer.pubkey(), b"v0")], [], blockhash), [payer])
        sig = (await client.send_transaction(tx)).value
        await client.confirm_transaction(sig, Confirmed, sleep_seconds=POLL)
        with pytest.raises(RPCException) as caught:
            await client.get_transaction(sig, commitment=Confirmed)
        assert isinstance(caught.value.args[0], UnsupportedTransactionVersionMessage)
        got = (await client.get_transaction(sig, commitment=Confirmed, max_supported_transaction_version=0)).value
        assert got.transaction.version == 0
        assert "Program log: v0" in got.transaction.meta.log_messages


async def test_simulate_and_helpers(localnet) -> None:
    async with AsyncClient(localnet.rpc_url) as client:
        payer = await airdropped(client, poll=POLL)
        tx = await signed(client, payer, [memo_ix(payer.pubkey(), b"dry run")])
        sim = (await client.simulate_transaction(tx)).value
        assert sim.err is None and "Program log: dry run" in sim.logs
        assert (await client.get_signature_statuses([tx.signatures[0]])).value == [None]
        fee = (await client.get_fee_for_message(tx.message)).value
        assert fee == 5000
        rent = (await client.get_minimum_balance_for_rent_exemption(100)).value
        assert rent > 0
        prio = await client.get_recent_prioritization_fees()
        assert prio.value and all(f.prioritization_fee == 0 for f in prio.value)
        info = (await client.get_epoch_info(Processed)).value
        assert info.absolute_slot == info.block_height > 0
        assert (await client.get_version()).value.solana_core


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_port_in_use_exits_2_with_a_clear_message() -> None:
    with _busy_port() as sock:
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "adapters.solana_localnet", "--rpc-port", str(port), "--ws-port", "0"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use: stop the process holding it or pass --rpc-port" in proc.stderr


def test_cli_prints_ready_and_stops_on_sigterm(tmp_path) -> None:
    ready_file = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.solana_localnet", "--rpc-port", "0", "--ws-port", "0",
         "--ready-file", str(ready_file)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        ready = json.loads(ready_file.read_text())
        assert line.strip() == f"ready rpc={ready['rpc_url']} ws={ready['ws_url']}"
        assert ready["pid"] == proc.pid and Pubkey.from_string(ready["faucet"])
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
