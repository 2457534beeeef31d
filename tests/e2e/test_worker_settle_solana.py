"""The worker settles up on the real Solana program (docs/TASKS.md "Worker", "Settling up"): a
WorkerV2 with SolanaTaskBoardV2 claims a delivered request (the claim creates the serve account, its
rent paid by the worker) and answers it; no verdict ever comes. Once the ledger's clock is moved past
deadline + SETTLEMENT_GRACE_SECONDS, the worker's own settle pass releases the bond and closes the
serve account (CloseServe): bond and rent back to the worker's account, minus the two transactions'
fees, with no call from an operator. The localnet runs in-process so that its clock can be moved
(as in tests/e2e/test_solana_board_v2.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.signature import Signature

from adapters.solana.program import SETTLEMENT_GRACE_SECONDS, serve_address
from adapters.solana_localnet.testing import running_solana_localnet_in_process
from attest import deal
from relay.envelope import Envelope
from relay.interfaces import ServeState
from relay.protocol import MessageKind
from relay.tasks.executors import ExecutorRegistry
from relay.tasks.payloads import TaskRequestV2
from relay.tasks.worker import WorkerSettings, WorkerV2, generate_identity
from relay.tasks.worker_store import TaskStage, WorkerStore
from tests.e2e.test_solana_board_v2 import DOMAIN_B, EPOCH, EVM_BOARD, EVM_DOMAIN, _deployed
from tests.support.solana import MovableClock, airdropped

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BOND = 20_000_000  # lamports


async def _until(what: str, check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        await asyncio.sleep(0.05)
    return value


async def test_the_worker_releases_its_bond_and_closes_its_serve_account_by_itself(
        movable_clock: MovableClock, tmp_path: Path) -> None:
    async with running_solana_localnet_in_process(slot_ms=30, finality_slots=8) as server:
        async with AsyncClient(server.rpc_url, commitment=Confirmed) as client:
            committee, shares = deal(4, 3, epoch=EPOCH)
            side = await _deployed(client, server.rpc_url, server.ws_url, DOMAIN_B, committee, shares)
            worker_key, refund = await airdropped(client), await airdropped(client)
            board = side.board(worker_key)
            store = await WorkerStore.open(tmp_path / "worker.db")
            identity = generate_identity(tmp_path / "worker.key")
            worker = WorkerV2(board, ExecutorRegistry.load(), identity, {EVM_DOMAIN: EVM_BOARD}, store,
                              WorkerSettings(executors=("echo",), min_time_left_s=1.0, claim_poll_s=0.1,
                                             settle_interval_s=0.1))
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            try:
                now = await board.chain_time()
                deadline = now + 30
                request = TaskRequestV2("echo", 10**15, deadline, auction_window=0, start_bps=10_000,
                                        claim_window=60, bond=BOND, refund_to=bytes(refund.pubkey()), input=b"hi")
                env = Envelope(MessageKind.TASK_REQUEST, 1, EVM_DOMAIN, EVM_BOARD, DOMAIN_B, board.address,
                               request.encode())
                await side.deliver(env)
                rid = env.message_id

                async def done() -> bool:
                    record = await store.get(rid)
                    return record is not None and record.stage is TaskStage.DONE

                await _until("the worker's answer", done)
                status = await board.claim_status(rid)
                assert status.state is ServeState.ANSWERED and status.claimant == board.account
                serve = await client.get_account_info(serve_address(side.program_id, rid), Confirmed)
                assert serve.value is not None
                rent = serve.value.lamports - BOND  # the account holds the bond and its rent
                assert rent > 0
                serve_record = await board.serve_account(rid)
                assert serve_record is not None and bytes(serve_record.rent_payer) == board.account
                before = (await client.get_balance(worker_key.pubkey(), Confirmed)).value

                async def waiting() -> bool:  # the settle pass saw it: nothing to do before deadline + grace
                    record = await store.settlement(rid)
                    return record is not None and record.state == "pending" and "verdict" in record.reason

                await _until("the settle pass's first look", waiting)

                # No verdict ever comes: past deadline + grace the worker settles up on its own.
                movable_clock.offset = deadline + SETTLEMENT_GRACE_SECONDS + 1 - now

                async def settled():  # type: ignore[no-untyped-def]
                    record = await store.settlement(rid)
                    return record if record is not None and record.done else None

                record = await _until("the worker's settlement", settled)
                assert record.release_tx and record.close_txs and record.withdrawn and record.withdraw_tx is None
                assert "rent back" in record.reason
                assert (await client.get_account_info(serve_address(side.program_id, rid), Confirmed)).value is None
                fees = 0
                for tx in (record.release_tx, *record.close_txs.split()):
                    sent = await client.get_transaction(Signature.from_string(tx), commitment=Confirmed,
                                                        max_supported_transaction_version=0)
                    assert sent.value is not None and sent.value.transaction.meta is not None
                    fees += sent.value.transaction.meta.fee
                after = (await client.get_balance(worker_key.pubkey(), Confirmed)).value
                assert after - before == BOND + rent - fees  # bond and every lamport of rent back
                assert worker.metrics.bonds_released._value.get() == 1
                assert worker.metrics.accounts_closed._value.get() == 1
            finally:
                stop.set()
                await asyncio.wait_for(running, 10)
                await store.close()
                await board.close()
