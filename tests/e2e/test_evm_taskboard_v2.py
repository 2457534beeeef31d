"""Task protocol v2 on a real anvil, through adapters/evm/taskboard.py's EvmTaskBoardV2: two chains
side by side on one node (gateway + TaskBoardV2 for domain A, the requester's, and for domain B, the
serving one, one committee), envelopes carried between them by hand as the relayer would. Request →
delivered → watched with its auction start → claimed at the auction price with the bond → submitted
by the claimant → the committee's verdict to both boards → price paid, rest refunded, bond back; a
lost claim race; an expired claim forfeited and re-claimed; a refused verdict; reclaim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from web3 import AsyncWeb3

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm.devnet import AnvilProcess
from adapters.evm.gateway import EvmAdapter, deploy_gateway
from adapters.evm.taskboard import EvmTaskBoardV2, deploy_task_board_v2
from relay.config import EvmChain
from relay.envelope import Envelope, address_to_bytes32
from relay.interfaces import (Claim, IncomingRequestV2, RequesterBoardV2, ServeState, ServingBoardV2,
                              SignedDelivery, TaskState)
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.board import BondRefused, ClaimLost, ClaimNotHeld, ReclaimRefused, RequestExpired
from relay.tasks.payloads import (AttestationMethod, ProofVerdict, RefusalReason, TaskRequestV2, TaskResultV2,
                                  auction_price)
from tests.support import evm

pytestmark = pytest.mark.e2e

CHAIN_ID = 31337
DOMAIN_A = 31337  # the requester's chain
DOMAIN_B = 31338  # the serving chain (same node, its own verifier, gateway and board)
EPOCH = 1
GATEWAY_FEE = 10**12
MAX_FEE = 10**15
BOND = 10**14
GRACE = 300
PAYOUT = "0x000000000000000000000000000000000000bEEF"  # fresh: its balance is only what the board pays
REFUND_TO = "0x000000000000000000000000000000000000F00D"  # the requester's account on B: forfeited bonds


@dataclass
class Side:
    domain: int
    gateway: str
    board: str


@dataclass
class Setup:
    node: AnvilProcess
    w3: AsyncWeb3
    shares: list[attest.KeyShare]
    a: Side
    b: Side

    def chain(self, side: Side) -> EvmChain:
        return EvmChain(kind="evm", domain=side.domain, chain_id=CHAIN_ID, rpc_urls=[self.node.rpc_url],
                        confirmations=0, contracts={"Gateway": side.gateway, "TaskBoardV2": side.board})

    def board(self, side: Side, key_index: int | None) -> EvmTaskBoardV2:
        key = self.node.private_keys[key_index] if key_index is not None else None
        return EvmTaskBoardV2("evm", self.chain(side), key, poll_interval=0.05)

    async def deliver(self, side: Side, envelope: Envelope) -> str:
        """What the relayer does: the committee's threshold signature, Gateway.deliverWithHint."""
        signature = attest.combine_signatures(
            [attest.partial_sign(self.shares[i], envelope.digest(EPOCH)) for i in (0, 2, 3)])
        relayer = EvmAdapter("evm", self.chain(side), self.node.private_keys[1])
        try:
            tx = await relayer.submit(SignedDelivery(envelope=envelope, epoch=EPOCH, signature=signature))
            receipt = await relayer._wait_receipt(tx, 30)
            assert receipt["status"] == 1
            assert await relayer.delivery_status_of(envelope.message_id) == 1, "the board must handle it"
            return tx
        finally:
            await relayer.close()

    async def sent_by(self, side: Side, tx: str) -> Envelope:
        """The envelope a source transaction emitted (what attesters and the relayer observe)."""
        watcher = EvmAdapter("evm", self.chain(side), None)
        try:
            (observation,) = await watcher.reobserve(tx)
            return observation.envelope
        finally:
            await watcher.close()

    async def block_time(self, tx: str) -> int:
        receipt = await self.w3.eth.get_transaction_receipt(tx)
        return int((await self.w3.eth.get_block(receipt["blockNumber"]))["timestamp"])

    async def at(self, timestamp: int) -> None:
        """The next block's time (anvil mines one block per transaction)."""
        evm.rpc(self.node, "evm_setNextBlockTimestamp", timestamp)

    async def balance(self, address: str) -> int:
        return await self.w3.eth.get_balance(AsyncWeb3.to_checksum_address(address))

    async def verdicts(self, result_env: Envelope, result: TaskResultV2, submitted_at: int,
                       refusal: RefusalReason | None = None) -> tuple[Envelope, Envelope]:
        """The committee's one verdict, in its two envelopes: to the requester's board (A), to the
        serving board (B)."""
        payload = ProofVerdict.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION, submitted_at,
                                          refusal).encode()

        def to(domain: int, receiver: bytes) -> Envelope:
            return Envelope(MessageKind.PROOF_ATTESTATION, 0, COMMITTEE_DOMAIN, bytes(32), domain, receiver, payload)

        return to(result_env.dst_domain, result_env.dst_receiver), to(result_env.src_domain, result_env.src_sender)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with evm.anvil_with_committee(DOMAIN_A, EPOCH) as anvil:
        deployer = anvil.deployer
        verifier_b = await evm_deploy.deploy(anvil.w3, deployer, "CommitteeVerifier", DOMAIN_B, EPOCH,
                                             anvil.committee.n, anvil.committee.t, anvil.committee.group_key)
        sides = []
        for domain, verifier in ((DOMAIN_A, anvil.verifier), (DOMAIN_B, verifier_b)):
            gateway = await deploy_gateway(anvil.w3, deployer, verifier, domain, fee=GATEWAY_FEE)
            board = await deploy_task_board_v2(anvil.w3, deployer, gateway, settlement_grace=GRACE)
            sides.append(Side(domain, gateway, board))
        yield Setup(anvil.node, anvil.w3, anvil.shares, *sides)


async def _requested(setup: Setup, requester: EvmTaskBoardV2, worker_board: bytes, **terms: Any) -> tuple[
        TaskRequestV2, Envelope]:
    now = int((await setup.w3.eth.get_block("latest"))["timestamp"])
    options: dict[str, Any] = dict(auction_window=100, start_bps=5_000, claim_window=120, bond=BOND,
                                   refund_to=address_to_bytes32(REFUND_TO))
    options.update(terms)
    request = TaskRequestV2("echo", MAX_FEE, options.pop("deadline", now + 600), input=b"hello", **options)
    sent = await requester.request_task(dst_domain=DOMAIN_B, worker_board=worker_board, request=request)
    assert sent.envelope.payload == request.encode() and sent.request_id == sent.envelope.message_id
    await setup.deliver(setup.b, sent.envelope)
    return request, sent.envelope


async def _next_request(board: EvmTaskBoardV2, cursor: str | None = None) -> IncomingRequestV2:
    async def first() -> IncomingRequestV2:
        async for incoming in board.watch_requests(cursor):
            return incoming
        raise AssertionError("the watch ended")

    return await asyncio.wait_for(first(), 30)


def _result(request_id: bytes, claim: Claim, output: bytes = b"hello") -> TaskResultV2:
    return TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=request_id, executor="echo", output=output,
                               claimant=claim.claimant, payout=claim.payout, price=claim.price)


async def test_request_claim_at_the_auction_price_submit_verdict_pays_price_and_refunds_rest(setup: Setup) -> None:
    requester = setup.board(setup.a, 3)
    worker = setup.board(setup.b, 2)
    reader = setup.board(setup.b, None)
    assert isinstance(requester, RequesterBoardV2) and isinstance(worker, ServingBoardV2)
    requester_address = Account.from_key(setup.node.private_keys[3]).address
    try:
        request, envelope = await _requested(setup, requester, worker.address)
        request_id = envelope.message_id
        status = await requester.task_status(request_id)
        assert status.state is TaskState.OPEN and status.max_fee == MAX_FEE
        assert status.refundable_after == request.deadline + GRACE and status.worker_board == worker.address

        incoming = await _next_request(worker)
        assert incoming.request_id == request_id and incoming.request == request
        assert incoming.envelope == envelope and incoming.auction_start == await setup.block_time(incoming.delivery_tx)
        served = await reader.claim_status(request_id)
        assert served.state is ServeState.OPEN and served.bond == BOND and served.claimant is None
        assert served.auction_start == incoming.auction_start and served.refund_to == address_to_bytes32(REFUND_TO)
        # Resuming after the cursor yields nothing already seen.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_next_request(worker, incoming.cursor), 1.0)

        # The price rises from half of max_fee; claimed 40 s into the 100 s window.
        claim_time = incoming.auction_start + 40
        await setup.at(claim_time)
        balance_before = await setup.balance(Account.from_key(setup.node.private_keys[2]).address)
        claim = await worker.claim(request_id, address_to_bytes32(PAYOUT))
        expected = auction_price(MAX_FEE, 5_000, 100, incoming.auction_start, claim_time)
        assert claim.price == expected == MAX_FEE // 2 + MAX_FEE // 2 * 40 // 100
        assert claim.claim_deadline == claim_time + 120 and claim.bond == BOND and claim.tx is not None
        assert claim.claimant == worker.account
        assert balance_before - await setup.balance(Account.from_key(setup.node.private_keys[2]).address) >= BOND
        # The price on the latest block's clock: 20 s later in the auction, higher than the claim's.
        await setup.at(claim_time + 20)
        evm.mine(setup.node)
        assert await reader.current_price(request_id) == auction_price(
            MAX_FEE, 5_000, 100, incoming.auction_start, claim_time + 20) > claim.price
        assert await reader.chain_time() == claim_time + 20
        # Claiming again is idempotent for the holder: nothing sent.
        again = await worker.claim(request_id, address_to_bytes32(PAYOUT))
        assert again.tx is None and again.price == claim.price and again.claim_deadline == claim.claim_deadline
        held = await reader.claim_status(request_id)
        assert held.state is ServeState.CLAIMED and held.claimant == worker.account and held.price == claim.price

        result = _result(request_id, claim)
        submit_tx = await worker.submit_result(request_id, result.encode())
        result_env = await setup.sent_by(setup.b, submit_tx)
        assert result_env.payload == result.encode() and result_env.dst_receiver == requester.address
        answered = await reader.claim_status(request_id)
        assert answered.state is ServeState.ANSWERED and answered.result_id == result_env.message_id

        # The verdict reaches A before its result: kept, and applied when the result arrives (attack 1).
        to_a, to_b = await setup.verdicts(result_env, result, await setup.block_time(submit_tx))
        await setup.deliver(setup.a, to_a)
        assert (await requester.task_status(request_id)).state is TaskState.OPEN
        assert not await requester.result_recorded(result_env.message_id)
        refund_before = await setup.balance(requester_address)
        await setup.deliver(setup.a, result_env)
        assert await requester.result_recorded(result_env.message_id)
        done = await requester.task_status(request_id)
        assert done.state is TaskState.COMPLETED
        assert (done.result_id, done.payout, done.price, done.refund) == (
            result_env.message_id, address_to_bytes32(PAYOUT), claim.price, MAX_FEE - claim.price)
        assert await setup.balance(PAYOUT) == claim.price
        assert await setup.balance(requester_address) - refund_before == MAX_FEE - claim.price

        claimant_before = await setup.balance(Account.from_key(setup.node.private_keys[2]).address)
        await setup.deliver(setup.b, to_b)
        assert (await reader.claim_status(request_id)).state is ServeState.CLOSED
        assert await setup.balance(Account.from_key(setup.node.private_keys[2]).address) - claimant_before == BOND
        assert await worker.withdraw(request_id) is None  # nothing held: nothing sent
    finally:
        for board in (requester, worker, reader):
            await board.close()


async def test_a_lost_claim_race_is_claim_lost_and_the_loser_cannot_submit(setup: Setup) -> None:
    requester = setup.board(setup.a, 3)
    first, second = setup.board(setup.b, 2), setup.board(setup.b, 4)
    try:
        _request, envelope = await _requested(setup, requester, first.address)
        request_id = envelope.message_id
        outcomes = await asyncio.gather(first.claim(request_id, address_to_bytes32(PAYOUT)),
                                        second.claim(request_id, address_to_bytes32(PAYOUT)),
                                        return_exceptions=True)
        claims = [o for o in outcomes if isinstance(o, Claim)]
        lost = [o for o in outcomes if isinstance(o, ClaimLost)]
        assert len(claims) == 1 and len(lost) == 1, outcomes
        assert lost[0].error == "AlreadyClaimed"
        winner, loser = (first, second) if claims[0].claimant == first.account else (second, first)
        # The loser's result (even a copy of the winner's fields but its own claimant) is refused.
        copied = TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=request_id, executor="echo",
                                     output=b"hello", claimant=loser.account, payout=claims[0].payout,
                                     price=claims[0].price)
        with pytest.raises(ClaimNotHeld) as refused:
            await loser.submit_result(request_id, copied.encode())
        assert refused.value.error == "NotClaimant"
        await winner.submit_result(request_id, _result(request_id, claims[0]).encode())
        # Answered: a late claim loses too.
        with pytest.raises(ClaimLost) as late:
            await loser.claim(request_id, address_to_bytes32(PAYOUT))
        assert late.value.error == "ResultPending"
    finally:
        for board in (requester, first, second):
            await board.close()


async def test_an_expired_claim_is_forfeited_and_another_worker_completes(setup: Setup) -> None:
    requester = setup.board(setup.a, 3)
    silent, honest, anyone = setup.board(setup.b, 2), setup.board(setup.b, 4), setup.board(setup.b, 5)
    try:
        _request, envelope = await _requested(setup, requester, silent.address, claim_window=10)
        request_id = envelope.message_id
        claim = await silent.claim(request_id, address_to_bytes32(PAYOUT))
        with pytest.raises(BondRefused) as early:
            await anyone.expire_claim(request_id)
        assert early.value.error == "ClaimNotExpired"
        await setup.at(claim.claim_deadline + 1)
        with pytest.raises(ClaimNotHeld) as late:
            await silent.submit_result(request_id, _result(request_id, claim).encode())
        assert late.value.error == "ClaimDeadlinePassed"
        # A claim run out is not held any more: claiming again is a new claim, not the old one.
        refund_before = await setup.balance(REFUND_TO)
        await anyone.expire_claim(request_id)
        assert await setup.balance(REFUND_TO) - refund_before == BOND
        reopened = await anyone.claim_status(request_id)
        assert reopened.state is ServeState.OPEN and reopened.claimant is None
        second = await honest.claim(request_id, address_to_bytes32(PAYOUT))
        assert second.claimant == honest.account and second.price >= claim.price
        tx = await honest.submit_result(request_id, _result(request_id, second).encode())
        assert (await honest.claim_status(request_id)).state is ServeState.ANSWERED and tx
    finally:
        for board in (requester, silent, honest, anyone):
            await board.close()


async def test_a_refused_verdict_forfeits_the_bond_and_reopens(setup: Setup) -> None:
    requester = setup.board(setup.a, 3)
    bogus, honest = setup.board(setup.b, 2), setup.board(setup.b, 4)
    try:
        _request, envelope = await _requested(setup, requester, bogus.address)
        request_id = envelope.message_id
        claim = await bogus.claim(request_id, address_to_bytes32(PAYOUT))
        result = _result(request_id, claim, output=b"wrong")
        submit_tx = await bogus.submit_result(request_id, result.encode())
        result_env = await setup.sent_by(setup.b, submit_tx)
        to_a, to_b = await setup.verdicts(result_env, result, await setup.block_time(submit_tx),
                                          RefusalReason.OUTPUT_MISMATCH)
        refund_before = await setup.balance(REFUND_TO)
        await setup.deliver(setup.b, to_b)
        assert await setup.balance(REFUND_TO) - refund_before == BOND
        assert (await honest.claim_status(request_id)).state is ServeState.OPEN
        await setup.deliver(setup.a, result_env)
        await setup.deliver(setup.a, to_a)
        assert (await requester.task_status(request_id)).state is TaskState.OPEN  # that result is dropped
        second = await honest.claim(request_id, address_to_bytes32(PAYOUT))
        assert second.claimant == honest.account
    finally:
        for board in (requester, bogus, honest):
            await board.close()


async def test_reclaim_after_deadline_and_grace_and_claims_after_the_deadline(setup: Setup) -> None:
    requester = setup.board(setup.a, 3)
    worker = setup.board(setup.b, 2)
    requester_address = Account.from_key(setup.node.private_keys[3]).address
    try:
        now = int((await setup.w3.eth.get_block("latest"))["timestamp"])
        request, envelope = await _requested(setup, requester, worker.address, deadline=now + 60)
        request_id = envelope.message_id
        with pytest.raises(ReclaimRefused) as early:
            await requester.reclaim(request_id)
        assert early.value.error == "DeadlineNotPassed"
        await setup.at(request.deadline + 1)
        with pytest.raises(RequestExpired):
            await worker.claim(request_id, address_to_bytes32(PAYOUT))
        await setup.at(request.deadline + GRACE + 1)
        evm.mine(setup.node)  # estimation runs on the latest block's clock
        before = await setup.balance(requester_address)
        tx = await requester.reclaim(request_id)
        receipt = await setup.w3.eth.get_transaction_receipt(tx)
        spent = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert await setup.balance(requester_address) - before + spent == MAX_FEE
        status = await requester.task_status(request_id)
        assert status.state is TaskState.REFUNDED and status.refund == MAX_FEE
        with pytest.raises(ReclaimRefused):
            await requester.reclaim(request_id)
    finally:
        await requester.close()
        await worker.close()
