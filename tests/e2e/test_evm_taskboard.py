"""The EVM task board on a real anvil, through adapters/evm/taskboard.py: requests delivered by the
committee are watched and answered (serving side); requests are escrowed, results and the
committee's PROOF_ATTESTATION pay the worker, and expired tasks are reclaimed (requester side)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from web3 import AsyncWeb3
from web3.logs import DISCARD

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm.devnet import AnvilProcess
from adapters.evm.gateway import EvmAdapter, deploy_gateway
from adapters.evm.taskboard import (
    EvmTaskBoard,
    deploy_task_board,
)
from relay.interfaces import SignedDelivery
from relay.config import EvmChain
from relay.envelope import Envelope, address_to_bytes32
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.board import ReclaimRefused, RequestRefused, ResultAlreadySubmitted, ResultRefused
from relay.interfaces import IncomingRequest, RequesterBoard, ServingBoard, TaskState
from relay.tasks.payloads import AttestationMethod, ProofAttestation, TaskRequest, TaskResult
from tests.support import evm
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

DOMAIN = 31337
REMOTE = 424242
EPOCH = 1
GATEWAY_FEE = 10**12
REMOTE_BOARD = b"\x00" * 12 + b"\x5e" * 20  # the other chain's task board
PAYOUT = "0x000000000000000000000000000000000000bEEF"  # a fresh address: its balance is only what we pay


@dataclass
class Setup:
    node: AnvilProcess
    w3: AsyncWeb3
    shares: list[attest.KeyShare]
    gateway: str
    board: str
    next_nonce: int = 0

    def rpc(self, method: str, *params: Any) -> Any:
        return evm.rpc(self.node, method, *params)

    def mine(self, blocks: int = 1) -> None:
        evm.mine(self.node, blocks)

    def task_board(self, key_index: int, confirmations: int = 0) -> EvmTaskBoard:
        return EvmTaskBoard.connect(self.node.rpc_url, domain=DOMAIN, chain_id=DOMAIN, gateway=self.gateway,
                                    board=self.board, private_key=self.node.private_keys[key_index],
                                    confirmations=confirmations, poll_interval=0.05)

    def inbound(self, kind: MessageKind, payload: bytes, src_domain: int = REMOTE,
                src_sender: bytes = REMOTE_BOARD) -> Envelope:
        self.next_nonce += 1
        return Envelope(kind, self.next_nonce, src_domain, src_sender, DOMAIN, address_to_bytes32(self.board), payload)

    async def deliver(self, envelope: Envelope) -> str:
        """What the relayer does: the committee's threshold signature, Gateway.deliverWithHint."""
        digest = envelope.digest(EPOCH)
        signature = attest.combine_signatures([attest.partial_sign(self.shares[i], digest) for i in (0, 2, 3)])
        chain = EvmChain(kind="evm", domain=DOMAIN, chain_id=DOMAIN, rpc_urls=[self.node.rpc_url], confirmations=0,
                         contracts={"Gateway": self.gateway})
        relayer = EvmAdapter("evm", chain, self.node.private_keys[1])
        try:
            tx = await relayer.submit(SignedDelivery(envelope=envelope, epoch=EPOCH, signature=signature))
            receipt = await relayer._wait_receipt(tx, 30)
            assert receipt["status"] == 1
            gateway = evm_deploy.contract(self.w3, "Gateway", self.gateway)
            (delivered,) = gateway.events.MessageDelivered().process_receipt(receipt, errors=DISCARD)
            assert delivered["args"]["handled"], "the task board must handle every delivery"
            return tx
        finally:
            await relayer.close()

    async def now(self) -> int:
        return int((await self.w3.eth.get_block("latest"))["timestamp"])


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with evm.anvil_with_committee(DOMAIN, EPOCH) as anvil:
        gateway = await deploy_gateway(anvil.w3, anvil.deployer, anvil.verifier, DOMAIN, fee=GATEWAY_FEE)
        board = await deploy_task_board(anvil.w3, anvil.deployer, gateway, attestation_grace=300)
        yield Setup(anvil.node, anvil.w3, anvil.shares, gateway, board)


async def _collect(board: EvmTaskBoard, cursor: str | None, into: list[IncomingRequest]) -> None:
    async for incoming in board.watch_requests(cursor):
        into.append(incoming)


def _signed_result(request_id: bytes, executor: str, output: bytes) -> TaskResult:
    return TaskResult.signed(Ed25519PrivateKey.generate(), request_id=request_id, executor=executor, output=output,
                             payout=address_to_bytes32(PAYOUT))


# --- serving side -----------------------------------------------------------------------------


async def test_watch_requests_and_submit_result(setup: Setup) -> None:
    worker = setup.task_board(2, confirmations=1)
    assert isinstance(worker, ServingBoard) and isinstance(worker, RequesterBoard)
    deadline = await setup.now() + 600
    request = TaskRequest("sentiment", 10**15, deadline, input=b"I love this")
    delivered = setup.inbound(MessageKind.TASK_REQUEST, request.encode())
    # A malformed request is ignored by the board (no TaskReceived): nothing to serve.
    await setup.deliver(setup.inbound(MessageKind.TASK_REQUEST, b"not a task request"))
    delivery_tx = await setup.deliver(delivered)

    passes = evm.WatchPasses(worker._evm)
    seen: list[IncomingRequest] = []
    task = asyncio.create_task(_collect(worker, None, seen))
    try:
        await passes.whole()
        assert seen == [], "yielded before the delivery had 1 confirmation"
        setup.mine()
        await wait_for(lambda: len(seen) == 1, what="the delivered request", timeout=10.0)
        (incoming,) = seen
        assert incoming.envelope == delivered
        assert incoming.request_id == delivered.message_id == incoming.envelope.message_id
        assert incoming.request == request
        assert incoming.delivery_tx == delivery_tx
        receipt = await setup.w3.eth.get_transaction_receipt(delivery_tx)
        assert incoming.position == receipt["blockNumber"]
        assert incoming.cursor.startswith(f"{receipt['blockNumber']}:")
    finally:
        task.cancel()

    assert not await worker.result_submitted(incoming.request_id)
    result = _signed_result(incoming.request_id, "sentiment", b'{"label": "positive"}')
    tx = await worker.submit_result(incoming.request_id, result.encode())
    receipt = await setup.w3.eth.get_transaction_receipt(tx)
    print(f"submitResult: {receipt['gasUsed']} gas")
    gateway = evm_deploy.contract(setup.w3, "Gateway", setup.gateway)
    (sent,) = gateway.events.MessageSent().process_receipt(receipt, errors=DISCARD)
    envelope = Envelope.decode(sent["args"]["envelope"])
    assert envelope.kind == MessageKind.TASK_RESULT
    assert (envelope.src_domain, envelope.src_sender) == (DOMAIN, address_to_bytes32(setup.board))
    assert (envelope.dst_domain, envelope.dst_receiver) == (REMOTE, REMOTE_BOARD)
    assert envelope.payload == result.encode()
    board = evm_deploy.contract(setup.w3, "TaskBoard", setup.board)
    (announced,) = board.events.TaskResultSent().process_receipt(receipt, errors=DISCARD)
    assert announced["args"]["resultId"] == envelope.message_id
    assert announced["args"]["submitter"] == worker.account.address
    assert await worker.result_submitted(incoming.request_id)

    # The first valid result wins; a second one (any worker's) is refused before anything is sent.
    other = _signed_result(incoming.request_id, "sentiment", b'{"label": "negative"}')
    with pytest.raises(ResultAlreadySubmitted, match="ResultAlreadySubmitted"):
        await worker.submit_result(incoming.request_id, other.encode())
    unknown = b"\x42" * 32
    with pytest.raises(ResultRefused, match="UnknownRequest") as caught:
        await worker.submit_result(unknown, _signed_result(unknown, "sentiment", b"x").encode())
    assert caught.value.error == "UnknownRequest"
    with pytest.raises(ResultRefused, match="answers request"):
        await worker.submit_result(unknown, result.encode())
    with pytest.raises(ResultRefused, match="malformed TASK_RESULT"):
        await worker.submit_result(incoming.request_id, b"\x00" * 10)

    # A second request after a restart: resuming from the saved cursor yields only it.
    second = setup.inbound(MessageKind.TASK_REQUEST,
                           TaskRequest.by_reference("http", 0, deadline, b"doc", "ipfs://bafy2").encode())
    await setup.deliver(second)
    setup.mine()
    resumed = setup.task_board(2, confirmations=1)
    resumed_passes = evm.WatchPasses(resumed._evm)
    later: list[IncomingRequest] = []
    task = asyncio.create_task(_collect(resumed, incoming.cursor, later))
    try:
        await wait_for(lambda: len(later) == 1, what="the second request", timeout=10.0)
        await resumed_passes.whole()
        assert [i.envelope for i in later] == [second]
        assert later[0].request.input_uri == "ipfs://bafy2"
    finally:
        task.cancel()
        await resumed.close()
        await worker.close()


async def test_expired_and_mismatched_results_are_refused(setup: Setup) -> None:
    worker = setup.task_board(2)
    deadline = await setup.now() + 60
    delivered = setup.inbound(MessageKind.TASK_REQUEST, TaskRequest("echo", 0, deadline, input=b"hi").encode())
    await setup.deliver(delivered)
    rid = delivered.message_id
    with pytest.raises(ResultRefused, match="ExecutorMismatch"):
        await worker.submit_result(rid, _signed_result(rid, "sentiment", b"hi").encode())
    setup.rpc("evm_increaseTime", 120)
    setup.mine()
    with pytest.raises(ResultRefused, match="RequestExpired") as caught:
        await worker.submit_result(rid, _signed_result(rid, "echo", b"hi").encode())
    assert "requester will reclaim" in str(caught.value)
    assert not await worker.result_submitted(rid)
    await worker.close()


# --- requester side ---------------------------------------------------------------------------


async def test_request_result_attestation_pays_the_worker(setup: Setup) -> None:
    requester = setup.task_board(3)
    deadline = await setup.now() + 600
    escrow = 5 * 10**15
    request = TaskRequest("echo", escrow, deadline, input=b"hello")
    sent = await requester.request_task(dst_domain=REMOTE, worker_board=REMOTE_BOARD, request=request)
    env = sent.envelope
    assert env.kind == MessageKind.TASK_REQUEST and env.payload == request.encode()
    assert (env.src_domain, env.src_sender) == (DOMAIN, address_to_bytes32(setup.board))
    assert (env.dst_domain, env.dst_receiver) == (REMOTE, REMOTE_BOARD)
    assert sent.request_id == env.message_id
    assert await setup.w3.eth.get_balance(setup.board) == escrow
    assert await setup.w3.eth.get_balance(setup.gateway) == GATEWAY_FEE

    status = await requester.task_status(sent.request_id)
    assert status.state is TaskState.OPEN and status.escrow == escrow and status.deadline == deadline
    assert status.executor == "echo" and status.result_id is None
    assert status.requester == address_to_bytes32(requester.account.address)

    result = _signed_result(sent.request_id, "echo", b"hello")
    result_env = setup.inbound(MessageKind.TASK_RESULT, result.encode())
    await setup.deliver(result_env)
    status = await requester.task_status(sent.request_id)
    assert status.state is TaskState.RESULT_RECEIVED and status.result_id == result_env.message_id
    assert status.worker == result.worker and status.output_hash == result.output_hash
    assert status.payout == address_to_bytes32(PAYOUT)

    attestation = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.SIGNATURE_ONLY,
                                              await setup.now())
    await setup.deliver(setup.inbound(MessageKind.PROOF_ATTESTATION, attestation.encode(),
                                      src_domain=COMMITTEE_DOMAIN, src_sender=b"\x00" * 32))
    status = await requester.task_status(sent.request_id)
    assert status.state is TaskState.COMPLETED
    assert await setup.w3.eth.get_balance(PAYOUT) == escrow
    assert await setup.w3.eth.get_balance(setup.board) == 0
    with pytest.raises(ReclaimRefused, match="TaskNotRefundable"):
        await requester.reclaim(sent.request_id)

    # By reference: the contract encodes the same bytes relay.tasks.payloads does.
    by_ref = TaskRequest.by_reference("http", 0, deadline, b"a long document", "https://example.org/doc")
    sent_ref = await requester.request_task(dst_domain=REMOTE, worker_board=REMOTE_BOARD, request=by_ref)
    assert sent_ref.envelope.payload == by_ref.encode()
    assert (await requester.task_status(sent_ref.request_id)).state is TaskState.OPEN

    # Refusals are decoded and nothing is sent.
    with pytest.raises(RequestRefused, match="DeadlineNotInFuture"):
        await requester.request_task(dst_domain=REMOTE, worker_board=REMOTE_BOARD,
                                     request=TaskRequest("echo", 1, await setup.now() - 1, input=b"late"))
    with pytest.raises(RequestRefused, match="SameDomain"):
        await requester.request_task(dst_domain=DOMAIN, worker_board=REMOTE_BOARD, request=request)
    assert (await requester.task_status(b"\x00" * 32)).state is TaskState.NONE
    await requester.close()


async def test_reclaim_after_the_deadline_refunds(setup: Setup) -> None:
    requester = setup.task_board(3)
    escrow = 10**16
    deadline = await setup.now() + 60
    sent = await requester.request_task(dst_domain=REMOTE, worker_board=REMOTE_BOARD,
                                        request=TaskRequest("echo", escrow, deadline, input=b"too slow"))
    with pytest.raises(ReclaimRefused, match="DeadlineNotPassed") as caught:
        await requester.reclaim(sent.request_id)
    assert caught.value.error == "DeadlineNotPassed"

    setup.rpc("evm_increaseTime", 120)
    setup.mine()
    address = requester.account.address
    before = await setup.w3.eth.get_balance(address)
    tx = await requester.reclaim(sent.request_id)
    receipt = await setup.w3.eth.get_transaction_receipt(tx)
    spent = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert await setup.w3.eth.get_balance(address) == before + escrow - spent
    assert (await requester.task_status(sent.request_id)).state is TaskState.REFUNDED
    assert await setup.w3.eth.get_balance(setup.board) == 0
    with pytest.raises(ReclaimRefused, match="TaskNotRefundable"):
        await requester.reclaim(sent.request_id)
    await requester.close()


async def test_two_workers_racing_in_one_block_one_wins_the_other_gets_the_typed_error(setup: Setup) -> None:
    delivered = setup.inbound(MessageKind.TASK_REQUEST,
                              TaskRequest("echo", 0, await setup.now() + 600, input=b"race").encode())
    await setup.deliver(delivered)
    rid = delivered.message_id
    boards = [setup.task_board(2), setup.task_board(4)]
    setup.rpc("evm_setAutomine", False)
    try:
        submissions = [asyncio.create_task(b.submit_result(rid, _signed_result(rid, "echo", b"race").encode()))
                       for b in boards]
        # Both estimated against the same state, both in the mempool, before one block holds them.
        await wait_for(lambda: sum(len(txs) for txs in setup.rpc("txpool_content")["pending"].values()) == 2,
                       what="both submissions in the mempool", timeout=30.0)
        setup.mine()
        outcomes = await asyncio.gather(*submissions, return_exceptions=True)
    finally:
        setup.rpc("evm_setAutomine", True)
    won = [o for o in outcomes if isinstance(o, str)]
    lost = [o for o in outcomes if isinstance(o, ResultAlreadySubmitted)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    receipt = await setup.w3.eth.get_transaction_receipt(won[0])
    assert receipt["status"] == 1
    block = await setup.w3.eth.get_block(receipt["blockNumber"])
    # Both were mined: the loser reverted on-chain and its reason came from replaying it at its block.
    assert len(block["transactions"]) == 2
    assert await boards[0].result_submitted(rid)
    for board in boards:
        await board.close()
