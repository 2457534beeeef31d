"""SolanaTaskBoard against the real Solana localnet server (a subprocess) with the Tessera program
deployed through the upgradeable loader: requests with escrow, deliveries to the board through
SolanaAdapter.submit (committee-signed), watch_requests, submit_result, payout and reclaim."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from adapters.solana.deploy import initialize_gateway
from adapters.solana.gateway import SolanaAdapter
from adapters.solana_localnet.testing import RunningLocalnet, running_solana_localnet
from adapters.solana.deploy import deploy_program, initialize_committee
from adapters.solana.program import task_address
from adapters.solana.taskboard import SolanaTaskBoard
from attest import Committee, KeyShare, combine, deal, partial_sign
from relay.interfaces import DeliveryState, SignedDelivery
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.board import ReclaimRefused, RequestRefused, ResultAlreadySubmitted, ResultRefused
from relay.interfaces import IncomingRequest, RequesterBoard, ServingBoard, TaskState
from relay.tasks.payloads import AttestationMethod, ProofAttestation, TaskRequest, TaskResult
from tests.support.solana import airdropped

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DOMAIN = 903
EVM_DOMAIN = 31337
EVM_BOARD = b"\x00" * 12 + b"\xb0" * 20
WORKER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)


@dataclass
class Deployed:
    net: RunningLocalnet
    program_id: Pubkey
    admin: Keypair
    committee: Committee
    shares: list[KeyShare]

    def chain(self) -> SolanaChain:
        return SolanaChain(kind="solana", domain=DOMAIN, rpc_urls=[self.net.rpc_url], ws_urls=[self.net.ws_url],
                           program_id=str(self.program_id))

    def sign(self, envelope: Envelope) -> SignedDelivery:
        digest = envelope.digest(1)
        result = combine(self.committee, digest, [partial_sign(share, digest) for share in self.shares[:3]])
        assert result.ok, result.reason
        return SignedDelivery(envelope, 1, result.signature)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deployed() -> AsyncIterator[Deployed]:
    async with running_solana_localnet(slot_ms=30, finality_slots=8) as net:
        async with AsyncClient(net.rpc_url, commitment=Confirmed) as client:
            admin = await airdropped(client, 100 * 10**9)
            program_id = await asyncio.wait_for(deploy_program(client, admin), 60)
            committee, shares = deal(4, 3, epoch=1)
            await initialize_committee(client, admin, program_id, domain=DOMAIN, epoch=1, n=4, t=3,
                                       group_key=committee.group_key)
            await initialize_gateway(client, admin, program_id)
        yield Deployed(net, program_id, admin, committee, shares)


@pytest_asyncio.fixture(loop_scope="module")
async def client(deployed: Deployed) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(deployed.net.rpc_url, commitment=Confirmed) as c:
        yield c


async def _delivered(adapter: SolanaAdapter, deployed: Deployed, envelope: Envelope) -> str:
    """Delivers through the adapter (which adds the board's accounts) and waits until final."""
    tx = await adapter.submit(deployed.sign(envelope))
    deadline = time.monotonic() + 20
    while True:
        status = await adapter.delivery_status(tx)
        if status.state is not DeliveryState.PENDING:
            assert status.state is DeliveryState.CONFIRMED, status
            return tx
        assert time.monotonic() < deadline, "delivery not final in time"
        await asyncio.sleep(0.05)


async def _first_request(board: SolanaTaskBoard, cursor: str | None, timeout: float = 20) -> IncomingRequest:
    async def run() -> IncomingRequest:
        async for incoming in board.watch_requests(cursor):
            return incoming
        raise AssertionError("watch_requests ended")

    return await asyncio.wait_for(run(), timeout)


async def _balance(client: AsyncClient, key: Pubkey) -> int:
    return (await client.get_balance(key, Confirmed)).value


async def test_request_task_escrows_and_sends_what_the_adapter_watches(deployed: Deployed, client: AsyncClient) -> None:
    requester, other = await airdropped(client), await airdropped(client)
    boards = [SolanaTaskBoard("solana", deployed.chain(), key) for key in (requester, other)]
    assert isinstance(boards[0], RequesterBoard) and isinstance(boards[0], ServingBoard)
    async with SolanaAdapter("solana", deployed.chain(), poll_interval=0.1) as watcher:
        try:
            deadline = int(time.time()) + 600
            before = await _balance(client, requester.pubkey())
            # Two requesters at once: at least one reads a nonce the other takes, and retries.
            sent = await asyncio.gather(*(
                board.request_task(dst_domain=EVM_DOMAIN, worker_board=EVM_BOARD,
                                   request=TaskRequest("sentiment", 2_000_000 + i, deadline, input=b"What a day"))
                for i, board in enumerate(boards)))
            low, high = sorted(s.envelope.nonce for s in sent)
            assert high == low + 1 and sent[0].request_id != sent[1].request_id
            status = await boards[0].task_status(sent[0].request_id)
            assert (status.state, status.escrow, status.deadline, status.executor, status.requester) == (
                TaskState.OPEN, 2_000_000, deadline, "sentiment", bytes(requester.pubkey()))
            assert before - await _balance(client, requester.pubkey()) > 2_000_000
            # The attesters and the relayer find the request with the unchanged SolanaAdapter.watch.
            seen: dict[bytes, Envelope] = {}

            async def watch() -> None:
                async for observation in watcher.watch(None):
                    seen[observation.envelope.message_id] = observation.envelope
                    if all(s.request_id in seen for s in sent):
                        return

            await asyncio.wait_for(watch(), 20)
            for s in sent:
                assert seen[s.request_id] == s.envelope
                assert s.envelope.src_sender == boards[0].address and s.envelope.dst_receiver == EVM_BOARD
            unknown = await boards[0].task_status(b"\x09" * 32)
            assert unknown.state is TaskState.NONE

            with pytest.raises(RequestRefused, match="TASK_DEADLINE_PASSED"):
                await boards[0].request_task(dst_domain=EVM_DOMAIN, worker_board=EVM_BOARD,
                                             request=TaskRequest("echo", 1, int(time.time()) - 5, input=b"late"))
        finally:
            for board in boards:
                await board.close()


async def test_a_delivered_request_is_watched_served_once_and_answered_through_the_gateway(
        deployed: Deployed, client: AsyncClient) -> None:
    relayer, worker, rival = await airdropped(client), await airdropped(client), await airdropped(client)
    async with SolanaAdapter("solana", deployed.chain(), relayer, poll_interval=0.1) as adapter, \
            SolanaTaskBoard("solana", deployed.chain(), worker, poll_interval=0.1, idle_poll_interval=60) as board, \
            SolanaTaskBoard("solana", deployed.chain(), rival, poll_interval=0.1) as rival_board:
        request = TaskRequest("sentiment", 10**15, int(time.time()) + 600, input=b"What a lovely day")
        envelope = Envelope(kind=MessageKind.TASK_REQUEST, nonce=77, src_domain=EVM_DOMAIN, src_sender=EVM_BOARD,
                            dst_domain=DOMAIN, dst_receiver=board.address, payload=request.encode())
        tx = await _delivered(adapter, deployed, envelope)
        incoming = await _first_request(board, None)
        assert (incoming.request_id, incoming.envelope, incoming.request, incoming.delivery_tx) == (
            envelope.message_id, envelope, request, tx)
        assert not await board.result_submitted(incoming.request_id)

        payout = b"\x00" * 12 + b"\xcc" * 20
        result = TaskResult.signed(WORKER_KEY, request_id=incoming.request_id, executor="sentiment",
                                   output=b'{"label":"positive"}', payout=payout)
        with pytest.raises(ResultRefused, match="request_id is not the request"):
            await board.submit_result(b"\x01" * 32, result.encode())
        undelivered = TaskResult.signed(WORKER_KEY, request_id=b"\x01" * 32, executor="sentiment",
                                        output=b"x", payout=payout)
        with pytest.raises(ResultRefused, match="REQUEST_RECEIPT_INVALID.*not delivered yet"):
            await board.submit_result(b"\x01" * 32, undelivered.encode())
        result_tx = await board.submit_result(incoming.request_id, result.encode())
        assert await board.result_submitted(incoming.request_id)
        with pytest.raises(ResultAlreadySubmitted, match="ALREADY_ANSWERED"):
            await rival_board.submit_result(incoming.request_id, result.encode())

        # The result leaves through the outbox, from the board to the requesting board.
        observations = {}

        async def watch() -> None:
            async for observation in adapter.watch(None):
                if observation.source_tx == result_tx:
                    observations["result"] = observation
                    return

        await asyncio.wait_for(watch(), 20)
        sent = observations["result"].envelope
        assert (sent.kind, sent.src_sender, sent.dst_domain, sent.dst_receiver, sent.payload) == (
            MessageKind.TASK_RESULT, board.address, EVM_DOMAIN, EVM_BOARD, result.encode())

        # A second delivered request: a watcher resumed after the first one's cursor, idle with a
        # 60 s poll, is woken by the logs subscription.
        watching = asyncio.create_task(_first_request(board, incoming.cursor))
        await asyncio.sleep(1.0)  # caught up and subscribed
        second = Envelope(kind=MessageKind.TASK_REQUEST, nonce=78, src_domain=EVM_DOMAIN, src_sender=EVM_BOARD,
                          dst_domain=DOMAIN, dst_receiver=board.address, payload=request.encode())
        await _delivered(adapter, deployed, second)
        assert (await watching).request_id == second.message_id


async def test_result_and_attestation_delivered_pay_the_worker_and_reclaim_refunds(deployed: Deployed,
                                                                                  client: AsyncClient) -> None:
    requester, relayer, payout = await airdropped(client), await airdropped(client), await airdropped(client, 10**9)
    async with SolanaAdapter("solana", deployed.chain(), relayer, poll_interval=0.1) as adapter, \
            SolanaTaskBoard("solana", deployed.chain(), requester, poll_interval=0.1) as board:
        escrow = 3_000_000
        sent = await board.request_task(dst_domain=EVM_DOMAIN, worker_board=EVM_BOARD, request=TaskRequest(
            "sentiment", escrow, int(time.time()) + 600, input=b"What a lovely day"))
        result = TaskResult.signed(WORKER_KEY, request_id=sent.request_id, executor="sentiment",
                                   output=b'{"label":"positive"}', payout=bytes(payout.pubkey()))
        result_env = Envelope(kind=MessageKind.TASK_RESULT, nonce=5, src_domain=EVM_DOMAIN, src_sender=EVM_BOARD,
                              dst_domain=DOMAIN, dst_receiver=board.address, payload=result.encode())
        await _delivered(adapter, deployed, result_env)
        status = await board.task_status(sent.request_id)
        assert (status.state, status.result_id, status.payout) == (
            TaskState.RESULT_RECEIVED, result_env.message_id, bytes(payout.pubkey()))
        with pytest.raises(ReclaimRefused, match="DEADLINE_NOT_PASSED"):
            await board.reclaim(sent.request_id)

        before = await _balance(client, payout.pubkey())
        attestation = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION,
                                                  int(time.time()))
        await _delivered(adapter, deployed, Envelope(
            kind=MessageKind.PROOF_ATTESTATION, nonce=0, src_domain=COMMITTEE_DOMAIN, src_sender=bytes(32),
            dst_domain=DOMAIN, dst_receiver=board.address, payload=attestation.encode()))
        assert await _balance(client, payout.pubkey()) == before + escrow
        assert (await board.task_status(sent.request_id)).state is TaskState.COMPLETED
        with pytest.raises(ReclaimRefused, match="TASK_NOT_REFUNDABLE"):
            await board.reclaim(sent.request_id)

        # An unanswered request is refunded after its deadline.
        short = await board.request_task(dst_domain=EVM_DOMAIN, worker_board=EVM_BOARD, request=TaskRequest(
            "echo", escrow, int(time.time()) + 2, input=b"nobody answers"))
        task_before = await _balance(client, task_address(deployed.program_id, short.request_id))
        await asyncio.sleep(3.5)
        refund_before = await _balance(client, requester.pubkey())
        await board.reclaim(short.request_id)
        assert (await board.task_status(short.request_id)).state is TaskState.REFUNDED
        assert await _balance(client, task_address(deployed.program_id, short.request_id)) == task_before - escrow
        # The requester paid the reclaim's fee itself (it signed): escrow back minus one fee.
        assert await _balance(client, requester.pubkey()) - refund_before > escrow - 10_000
