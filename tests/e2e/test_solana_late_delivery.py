"""Late task deliveries after their records were closed, on the real program behind the localnet's RPC
with the relayer's Solana adapter building the accounts (docs/TASKS.md "Closing settled records on
Solana"). Both sides on one chain: a request paid here (to an EVM board) is refunded after deadline +
grace and its task closed (CloseTask: a tombstone stays); a request served here is answered, its
bond released and its serve account closed (CloseServe). Then the result and the committee's verdicts
arrive: `SolanaAdapter.submit` finds the tombstone / the serve-closed receipt, each delivery lands
once as a no-op (no lamports move) and a second submit is refused ALREADY_DELIVERED — instead of
TASK_ACCOUNT_WRONG for ever and a dead letter. The localnet runs in-process so that its clock can
be moved (as in tests/e2e/test_solana_board_v2.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from solders.signature import Signature
from structlog.testing import capture_logs

from adapters.solana.program import (
    RECEIPT_STATUS_SERVE_CLOSED,
    SETTLEMENT_GRACE_SECONDS,
    DeliveryReceipt,
    is_task_tombstone,
    receipt_address,
    serve_address,
)
from adapters.solana_localnet.testing import running_solana_localnet_in_process
from attest import combine, deal, partial_sign
from relay.envelope import Envelope
from relay.interfaces import Claim, DeliveryState, ServeState, SignedDelivery, TaskState
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.payloads import AttestationMethod, ProofVerdict, TaskRequestV2
from tests.e2e.test_solana_board_v2 import (DOMAIN_B, EPOCH, EVM_BOARD, EVM_DOMAIN, MAX_FEE, BOND, Side, _deployed,
                                            _result, _until_chain_time_passes)
from tests.support.solana import MovableClock, airdropped

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def _refused_again(side: Side, envelope: Envelope) -> str:
    """Submits `envelope` a second time; returns the reverted delivery's detail."""
    digest = envelope.digest(EPOCH)
    signed = combine(side.committee, digest, [partial_sign(share, digest) for share in side.shares[:3]])
    adapter = side.adapter()
    try:
        tx = await adapter.submit(SignedDelivery(envelope, EPOCH, signed.signature))
        deadline = time.monotonic() + 30
        while (status := await adapter.delivery_status(tx)).state is DeliveryState.PENDING:
            assert time.monotonic() < deadline, "delivery not final in time"
            await asyncio.sleep(0.05)
        assert status.state is DeliveryState.REVERTED, status
        return status.detail
    finally:
        await adapter.close()


def _verdict(result_env: Envelope, result, submitted_at: int, domain: int, receiver: bytes) -> Envelope:
    payload = ProofVerdict.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION,
                                      submitted_at).encode()
    return Envelope(MessageKind.PROOF_ATTESTATION, 0, COMMITTEE_DOMAIN, bytes(32), domain, receiver, payload)


async def test_late_results_and_verdicts_to_closed_records_land_once_as_no_ops(movable_clock: MovableClock) -> None:
    async with running_solana_localnet_in_process(slot_ms=30, finality_slots=8) as server:
        async with AsyncClient(server.rpc_url, commitment=Confirmed) as client:
            committee, shares = deal(4, 3, epoch=EPOCH)
            side = await _deployed(client, server.rpc_url, server.ws_url, DOMAIN_B, committee, shares)
            requester, worker, anyone, refund = [await airdropped(client) for _ in range(4)]
            boards = [side.board(k) for k in (requester, worker, anyone)]
            requester_board, worker_board, anyone_board = boards

            async def balances(*keys: Pubkey) -> list[int]:
                return [(await client.get_balance(key, Confirmed)).value for key in keys]

            try:
                now = await anyone_board.chain_time()
                deadline = now + 20
                # Requester side: a request paid here to an EVM board.
                paid = TaskRequestV2("echo", MAX_FEE, deadline, auction_window=0, start_bps=10_000, claim_window=60,
                                     bond=BOND, refund_to=EVM_BOARD, input=b"hi")
                sent = await requester_board.request_task(dst_domain=EVM_DOMAIN, worker_board=EVM_BOARD, request=paid)
                task = (await requester_board.task_account_v2(sent.request_id))[0]
                # Serving side: a request from the EVM chain, claimed and answered here.
                served = TaskRequestV2("echo", 10**15, deadline, auction_window=0, start_bps=10_000, claim_window=60,
                                       bond=BOND, refund_to=bytes(refund.pubkey()), input=b"hi")
                request_env = Envelope(MessageKind.TASK_REQUEST, 1, EVM_DOMAIN, EVM_BOARD, DOMAIN_B,
                                       worker_board.address, served.encode())
                await side.deliver(request_env)
                claim = await worker_board.claim(request_env.message_id, EVM_BOARD)
                served_result = _result(request_env.message_id, claim, b"hi")
                submit_tx = await worker_board.submit_result(request_env.message_id, served_result.encode())
                served_result_env = await side.sent_by(submit_tx)

                # No result, no verdict in time: past deadline + grace both records settle and close.
                movable_clock.offset = deadline + SETTLEMENT_GRACE_SECONDS + 1 - now
                await _until_chain_time_passes(anyone_board, deadline + SETTLEMENT_GRACE_SECONDS)
                await anyone_board.reclaim(sent.request_id)
                await anyone_board.release_bond(request_env.message_id)
                assert len(await requester_board.close_settled(sent.request_id)) == 1
                assert len(await worker_board.close_settled(request_env.message_id, serving_only=True)) == 1
                tomb = await client.get_account_info(task, Confirmed)
                assert tomb.value is not None and is_task_tombstone(bytes(tomb.value.data), sent.request_id)
                # A watcher meeting the request again (a fresh relayer, an attester re-observing) reads
                # its envelope from the logs: the tombstone is a settled task, not an undecodable one.
                watcher = side.adapter()
                try:
                    with capture_logs() as logs:
                        again = await watcher.reobserve(sent.tx)
                    assert [o.envelope for o in again] == [sent.envelope]
                    assert [e["event"] for e in logs if e["log_level"] == "error"] == []
                    assert any(e["event"].startswith("task account closed since the request") for e in logs)
                finally:
                    await watcher.close()
                assert (await client.get_account_info(serve_address(side.program_id, request_env.message_id),
                                                      Confirmed)).value is None
                assert (await requester_board.task_status(sent.request_id)).state is TaskState.NONE
                assert (await worker_board.claim_status(request_env.message_id)).state is ServeState.CLOSED

                # The late messages: the EVM worker's result for the paid request and its verdict (to this
                # board as the requester's), and the verdict on the result served here (as the serving board).
                late_claim = Claim(request_id=sent.request_id, claimant=EVM_BOARD, payout=bytes(requester.pubkey()),
                                         price=MAX_FEE // 2, claim_deadline=deadline, bond=BOND, tx=None)
                late_result = _result(sent.request_id, late_claim, b"hi")
                late_result_env = Envelope(MessageKind.TASK_RESULT, 7, EVM_DOMAIN, EVM_BOARD, DOMAIN_B,
                                           requester_board.address, late_result.encode())
                late_verdict_env = _verdict(late_result_env, late_result, deadline - 1, DOMAIN_B,
                                            requester_board.address)
                serving_verdict_env = _verdict(served_result_env, served_result, deadline - 1, DOMAIN_B,
                                               worker_board.address)
                watched = [task, requester.pubkey(), worker.pubkey(), refund.pubkey()]
                before = await balances(*watched)
                closed = {late_result_env.message_id: "its task was closed (CloseTask)",
                          late_verdict_env.message_id: "its task was closed (CloseTask)",
                          serving_verdict_env.message_id: "its serve account was closed (CloseServe)"}
                for envelope in (late_result_env, late_verdict_env, serving_verdict_env):
                    tx = await side.deliver(envelope)  # CONFIRMED: recorded
                    landed = await client.get_transaction(Signature.from_string(tx), commitment=Confirmed,
                                                          max_supported_transaction_version=0)
                    logs = landed.value.transaction.meta.log_messages
                    assert f"Program log: tessera: task message ignored: {closed[envelope.message_id]}" in logs, logs
                    receipt = await client.get_account_info(receipt_address(side.program_id, envelope.message_id)[0],
                                                            Confirmed)
                    assert receipt.value is not None
                    detail = await _refused_again(side, envelope)
                    assert "ALREADY_DELIVERED" in detail, detail
                assert await balances(*watched) == before
                marked = await client.get_account_info(receipt_address(side.program_id, request_env.message_id)[0],
                                                       Confirmed)
                assert DeliveryReceipt.decode(bytes(marked.value.data)).status == RECEIPT_STATUS_SERVE_CLOSED
            finally:
                for board in boards:
                    await board.close()
