"""Task protocol v2 on the real Solana localnet server, through adapters/solana/taskboard.py's
SolanaTaskBoardV2 (what the worker and the SDK use): two deployments of the Tessera program on one
localnet stand for two chains (A, the requester's, and B, the serving one; one dealt committee),
envelopes carried between them by SolanaAdapter as the relayer would. Request → delivered → watched
with its auction start → claimed at the auction price with the bond → submitted by the claimant → the
committee's verdict to both boards → price paid, rest refunded, bond back; a lost claim race; an
expired claim forfeited to refund_to and claimed by another; a refused verdict (bond forfeited,
re-opened). Reclaim and releaseBond open at deadline + 1,800 s (a constant of the program): the
localnet has no clock warp, so that test runs the same server in-process with its ledger's clock
moved forward."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from adapters.solana.deploy import deploy_program, initialize_committee, initialize_gateway
from adapters.solana.driver import SolanaDriver
from adapters.solana.gateway import SolanaAdapter
from adapters.solana.program import SETTLEMENT_GRACE_SECONDS, DeliveryReceipt, receipt_address
from adapters.solana.taskboard import SolanaTaskBoardV2
from adapters.solana_localnet.testing import running_solana_localnet, running_solana_localnet_in_process
from attest import Committee, KeyShare, combine, deal, partial_sign
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.interfaces import (Claim, DeliveryState, IncomingRequestV2, RequesterBoardV2, ServeState, ServingBoardV2,
                              SignedDelivery, TaskState)
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.board import (BondRefused, ClaimLost, ClaimNotHeld, ReclaimRefused, RequestExpired,
                               ResultAlreadySubmitted, ResultRefused, TaskBoardError)
from relay.tasks.payloads import (AttestationMethod, ProofVerdict, RefusalReason, TaskRequestV2, TaskResultV2,
                                  auction_price)
from tests.support.solana import MovableClock, airdropped

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DOMAIN_A = 911  # the requester's chain
DOMAIN_B = 912  # the serving chain
EVM_DOMAIN = 31337  # a requester chain that is not here (its envelopes are built by hand)
EVM_BOARD = b"\x00" * 12 + b"\xb0" * 20
MAX_FEE = 50_000_000  # lamports on A
BOND = 20_000_000  # lamports on B
EPOCH = 1


@dataclass
class Side:
    """One deployment of the program: a chain with its domain, committee and gateway."""

    rpc_url: str
    ws_url: str
    program_id: Pubkey
    domain: int
    shares: list[KeyShare]
    committee: Committee
    relayer: Keypair

    def chain(self) -> SolanaChain:
        return SolanaChain(kind="solana", domain=self.domain, rpc_urls=[self.rpc_url], ws_urls=[self.ws_url],
                           program_id=str(self.program_id), commitment="confirmed")

    def board(self, signer: Keypair | None) -> SolanaTaskBoardV2:
        return SolanaTaskBoardV2("solana", self.chain(), signer, poll_interval=0.05)

    def adapter(self) -> SolanaAdapter:
        return SolanaAdapter("solana", self.chain(), self.relayer, poll_interval=0.05)

    async def deliver(self, envelope: Envelope) -> str:
        """What the relayer does: the committee's threshold signature, Deliver with the board's accounts."""
        digest = envelope.digest(EPOCH)
        signed = combine(self.committee, digest, [partial_sign(share, digest) for share in self.shares[:3]])
        assert signed.ok, signed.reason
        adapter = self.adapter()
        try:
            tx = await adapter.submit(SignedDelivery(envelope, EPOCH, signed.signature))
            deadline = time.monotonic() + 30
            while (status := await adapter.delivery_status(tx)).state is DeliveryState.PENDING:
                assert time.monotonic() < deadline, "delivery not final in time"
                await asyncio.sleep(0.05)
            assert status.state is DeliveryState.CONFIRMED, status
            return tx
        finally:
            await adapter.close()

    async def sent_by(self, tx: str) -> Envelope:
        """The envelope a source transaction sent (what attesters and the relayer observe)."""
        adapter = self.adapter()
        try:
            deadline = time.monotonic() + 30
            while not (observations := await adapter.reobserve(tx)):
                assert time.monotonic() < deadline, "the transaction's envelope was not observed in time"
                await asyncio.sleep(0.05)
            (observation,) = observations
            return observation.envelope
        finally:
            await adapter.close()


async def _deployed(client: AsyncClient, rpc_url: str, ws_url: str, domain: int,
                    committee: Committee, shares: list[KeyShare]) -> Side:
    admin = await airdropped(client, 100 * 10**9)
    program_id = await asyncio.wait_for(deploy_program(client, admin), 120)
    await initialize_committee(client, admin, program_id, domain=domain, epoch=EPOCH, n=4, t=3,
                               group_key=committee.group_key)
    await initialize_gateway(client, admin, program_id)
    return Side(rpc_url, ws_url, program_id, domain, shares, committee, await airdropped(client))


@dataclass
class Net:
    client: AsyncClient
    a: Side
    b: Side

    async def balance(self, key: Pubkey) -> int:
        return (await self.client.get_balance(key, Confirmed)).value

    async def funded(self, lamports: int = 10 * 10**9) -> Keypair:
        return await airdropped(self.client, lamports)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net() -> AsyncIterator[Net]:
    async with running_solana_localnet(slot_ms=30, finality_slots=8) as localnet:
        async with AsyncClient(localnet.rpc_url, commitment=Confirmed) as client:
            committee, shares = deal(4, 3, epoch=EPOCH)
            a = await _deployed(client, localnet.rpc_url, localnet.ws_url, DOMAIN_A, committee, shares)
            b = await _deployed(client, localnet.rpc_url, localnet.ws_url, DOMAIN_B, committee, shares)
            yield Net(client, a, b)


def _verdicts(result_env: Envelope, result: TaskResultV2, submitted_at: int,
              refusal: RefusalReason | None = None) -> tuple[Envelope, Envelope]:
    """The committee's one verdict in its two envelopes: to the requester's board (A), to the serving board (B)."""
    payload = ProofVerdict.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION,
                                      submitted_at, refusal).encode()

    def to(domain: int, receiver: bytes) -> Envelope:
        return Envelope(MessageKind.PROOF_ATTESTATION, 0, COMMITTEE_DOMAIN, bytes(32), domain, receiver, payload)

    return to(result_env.dst_domain, result_env.dst_receiver), to(result_env.src_domain, result_env.src_sender)


def _result(request_id: bytes, claim: Claim, output: bytes = b"hello") -> TaskResultV2:
    return TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=request_id, executor="echo", output=output,
                               claimant=claim.claimant, payout=claim.payout, price=claim.price)


async def _requested(net: Net, requester: SolanaTaskBoardV2, worker_board: bytes, refund_to: Pubkey,
                     **terms: Any) -> tuple[TaskRequestV2, Envelope, str]:
    """A request from A to B's board, delivered to B; (request, envelope, request transaction)."""
    now = await requester.chain_time()
    options: dict[str, Any] = dict(auction_window=100, start_bps=5_000, claim_window=120, bond=BOND,
                                   refund_to=bytes(refund_to))
    options.update(terms)
    request = TaskRequestV2("echo", MAX_FEE, options.pop("deadline", now + 600), input=b"hello", **options)
    sent = await requester.request_task(dst_domain=DOMAIN_B, worker_board=worker_board, request=request)
    assert sent.envelope.payload == request.encode() and sent.request_id == sent.envelope.message_id
    await net.b.deliver(sent.envelope)
    return request, sent.envelope, sent.tx


async def _next_request(board: SolanaTaskBoardV2, cursor: str | None = None,
                        request_id: bytes | None = None) -> IncomingRequestV2:
    async def first() -> IncomingRequestV2:
        async for incoming in board.watch_requests(cursor):
            if request_id is None or incoming.request_id == request_id:
                return incoming
        raise AssertionError("the watch ended")

    return await asyncio.wait_for(first(), 30)


async def _until_chain_time_passes(board: SolanaTaskBoardV2, moment: int) -> None:
    deadline = time.monotonic() + 30
    while await board.chain_time() <= moment:
        assert time.monotonic() < deadline, f"the chain's clock did not pass {moment}"
        await asyncio.sleep(0.1)


async def test_request_claim_at_the_auction_price_submit_verdict_pays_price_refunds_rest_bond_back(net: Net) -> None:
    requester_key, worker_key, payout_key, refund_key = (await net.funded(), await net.funded(), await net.funded(),
                                                         await net.funded())
    requester, worker, reader = net.a.board(requester_key), net.b.board(worker_key), net.b.board(None)
    assert isinstance(requester, RequesterBoardV2) and isinstance(worker, ServingBoardV2)
    assert requester.account == bytes(requester_key.pubkey()) and reader.account == bytes(32)
    try:
        requester_before = await net.balance(requester_key.pubkey())
        request, envelope, request_tx = await _requested(net, requester, worker.address, refund_key.pubkey())
        request_id = envelope.message_id
        # The relayer observes the envelope the program stored, the one request_task returned.
        assert await net.a.sent_by(request_tx) == envelope
        assert requester_before - await net.balance(requester_key.pubkey()) > MAX_FEE  # escrow + rent + fee
        status = await requester.task_status(request_id)
        assert status.state is TaskState.OPEN and status.max_fee == MAX_FEE
        assert status.refundable_after == request.deadline + SETTLEMENT_GRACE_SECONDS
        assert (status.worker_board, status.dst_domain, status.executor) == (worker.address, DOMAIN_B, "echo")
        assert status.requester == requester.account

        incoming = await _next_request(worker, request_id=request_id)
        assert incoming.request == request and incoming.envelope == envelope
        receipt = DeliveryReceipt.decode(await reader._account_data(
            receipt_address(net.b.program_id, request_id)[0]))
        assert incoming.auction_start == receipt.unix_time
        # Resuming after the cursor yields nothing already seen.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_next_request(worker, incoming.cursor), 1.0)
        open_ = await reader.claim_status(request_id)
        assert open_.state is ServeState.OPEN and open_.claimant is None and open_.claims == 0
        assert (open_.bond, open_.refund_to, open_.auction_start) == (BOND, bytes(refund_key.pubkey()),
                                                                     incoming.auction_start)
        assert (open_.src_domain, open_.src_board, open_.max_fee) == (DOMAIN_A, requester.address, MAX_FEE)
        now = await reader.chain_time()
        price_now = await reader.current_price(request_id)
        assert price_now == auction_price(MAX_FEE, 5_000, 100, incoming.auction_start, now)
        assert MAX_FEE // 2 <= price_now < MAX_FEE

        worker_before = await net.balance(worker_key.pubkey())
        claim = await worker.claim(request_id, bytes(payout_key.pubkey()))
        claimed_at = claim.claim_deadline - 120  # the program's clock when the claim landed
        assert claim.price == auction_price(MAX_FEE, 5_000, 100, incoming.auction_start, claimed_at)
        assert claim.tx is not None and claim.claimant == worker.account and claim.bond == BOND
        assert claim.payout == bytes(payout_key.pubkey())
        assert worker_before - await net.balance(worker_key.pubkey()) > BOND  # bond + the serve account's rent
        # Claiming again is idempotent for the holder: nothing sent.
        again = await worker.claim(request_id, bytes(payout_key.pubkey()))
        assert again.tx is None and (again.price, again.claim_deadline) == (claim.price, claim.claim_deadline)
        held = await reader.claim_status(request_id)
        assert held.state is ServeState.CLAIMED and held.claimant == worker.account and held.price == claim.price
        assert held.auction_start == incoming.auction_start and held.claims == 1  # the program's own record
        with pytest.raises(TaskBoardError, match="read-only"):
            await reader.claim(request_id, bytes(payout_key.pubkey()))

        result = _result(request_id, claim)
        submit_tx = await worker.submit_result(request_id, result.encode())
        result_env = await net.b.sent_by(submit_tx)
        assert result_env.payload == result.encode()
        assert (result_env.dst_domain, result_env.dst_receiver) == (DOMAIN_A, requester.address)
        answered = await reader.claim_status(request_id)
        assert answered.state is ServeState.ANSWERED and answered.result_id == result_env.message_id
        assert answered.submitted_at is not None and answered.submitted_at <= request.deadline

        # The verdict reaches A before its result: kept, and applied when the result arrives (attack 1).
        to_a, to_b = _verdicts(result_env, result, answered.submitted_at)
        requester_before = await net.balance(requester_key.pubkey())
        await net.a.deliver(to_a)
        assert (await requester.task_status(request_id)).state is TaskState.OPEN
        assert not await requester.result_recorded(result_env.message_id)
        await net.a.deliver(result_env)
        assert await requester.result_recorded(result_env.message_id)
        done = await requester.task_status(request_id)
        assert done.state is TaskState.COMPLETED
        assert (done.result_id, done.payout, done.price, done.refund) == (
            result_env.message_id, bytes(payout_key.pubkey()), claim.price, MAX_FEE - claim.price)
        assert await net.balance(payout_key.pubkey()) - 10 * 10**9 == claim.price
        assert await net.balance(requester_key.pubkey()) - requester_before == MAX_FEE - claim.price
        assert await requester.withdraw(request_id) is None  # nothing held: nothing sent

        worker_before = await net.balance(worker_key.pubkey())
        await net.b.deliver(to_b)
        closed = await reader.claim_status(request_id)
        assert closed.state is ServeState.CLOSED and closed.claimant == worker.account
        assert await net.balance(worker_key.pubkey()) - worker_before == BOND
        assert await worker.withdraw(request_id) is None
        with pytest.raises(ClaimLost) as late:
            await worker.claim(request_id, bytes(payout_key.pubkey()))
        assert late.value.error == "REQUEST_CLOSED"
    finally:
        for board in (requester, worker, reader):
            await board.close()


async def test_a_lost_claim_race_is_claim_lost_and_the_loser_cannot_submit(net: Net) -> None:
    requester = net.a.board(await net.funded())
    first, second = net.b.board(await net.funded()), net.b.board(await net.funded())
    payout = bytes(Keypair().pubkey())
    try:
        _request, envelope, _tx = await _requested(net, requester, first.address, (await net.funded()).pubkey())
        request_id = envelope.message_id
        outcomes = await asyncio.gather(first.claim(request_id, payout), second.claim(request_id, payout),
                                        return_exceptions=True)
        claims = [o for o in outcomes if isinstance(o, Claim)]
        lost = [o for o in outcomes if isinstance(o, ClaimLost)]
        assert len(claims) == 1 and len(lost) == 1, outcomes
        assert lost[0].error == "ALREADY_CLAIMED"
        winner, loser = (first, second) if claims[0].claimant == first.account else (second, first)
        # The winner's result sent by the loser: refused before anything is sent (not its claim).
        with pytest.raises(ResultRefused) as mismatch:
            await loser.submit_result(request_id, _result(request_id, claims[0]).encode())
        assert mismatch.value.error == "CLAIM_MISMATCH"
        # A copy with the loser's own claimant: the program refuses it (attack 3).
        copied = TaskResultV2.signed(Ed25519PrivateKey.generate(), request_id=request_id, executor="echo",
                                     output=b"hello", claimant=loser.account, payout=claims[0].payout,
                                     price=claims[0].price)
        with pytest.raises(ClaimNotHeld) as refused:
            await loser.submit_result(request_id, copied.encode())
        assert refused.value.error == "NOT_CLAIMANT"
        await winner.submit_result(request_id, _result(request_id, claims[0]).encode())
        # One result per claim: the claimant's second one is refused.
        with pytest.raises(ResultAlreadySubmitted) as answered:
            await winner.submit_result(request_id, _result(request_id, claims[0], b"again").encode())
        assert answered.value.error == "ALREADY_ANSWERED"
        # Answered: a late claim loses too.
        with pytest.raises(ClaimLost) as late:
            await loser.claim(request_id, payout)
        assert late.value.error == "RESULT_PENDING"
    finally:
        for board in (requester, first, second):
            await board.close()


async def test_an_expired_claim_is_forfeited_to_refund_to_and_another_worker_completes(net: Net) -> None:
    requester = net.a.board(await net.funded())
    silent, honest, anyone = net.b.board(await net.funded()), net.b.board(await net.funded()), net.b.board(
        await net.funded())
    refund_to = (await net.funded()).pubkey()
    payout = bytes(Keypair().pubkey())
    try:
        # 1. Forfeited by anyone's expire_claim.
        _request, envelope, _tx = await _requested(net, requester, silent.address, refund_to, claim_window=2)
        request_id = envelope.message_id
        claim = await silent.claim(request_id, payout)
        with pytest.raises(BondRefused) as early:
            await anyone.expire_claim(request_id)
        assert early.value.error == "CLAIM_NOT_EXPIRED"
        await _until_chain_time_passes(silent, claim.claim_deadline)
        with pytest.raises(ClaimNotHeld) as late:
            await silent.submit_result(request_id, _result(request_id, claim).encode())
        assert late.value.error == "CLAIM_DEADLINE_PASSED"
        refund_before = await net.balance(refund_to)
        await anyone.expire_claim(request_id)
        assert await net.balance(refund_to) - refund_before == BOND
        reopened = await anyone.claim_status(request_id)
        assert reopened.state is ServeState.OPEN and reopened.claimant is None
        with pytest.raises(BondRefused) as twice:
            await anyone.expire_claim(request_id)
        assert twice.value.error == "NOT_CLAIMED"
        second = await honest.claim(request_id, payout)
        assert second.claimant == honest.account and second.price >= claim.price and second.tx is not None
        await honest.submit_result(request_id, _result(request_id, second).encode())
        answered = await honest.claim_status(request_id)
        assert answered.state is ServeState.ANSWERED and answered.claimant == honest.account
        assert answered.claims == 2

        # 2. Forfeited by the next claim itself.
        _request, envelope, _tx = await _requested(net, requester, silent.address, refund_to, claim_window=2)
        request_id = envelope.message_id
        claim = await silent.claim(request_id, payout)
        await _until_chain_time_passes(silent, claim.claim_deadline)
        # Run out: not held any more, so claiming again is a new claim, not the old one.
        refund_before = await net.balance(refund_to)
        taken = await honest.claim(request_id, payout)
        assert taken.claimant == honest.account and taken.tx is not None
        assert await net.balance(refund_to) - refund_before == BOND
    finally:
        for board in (requester, silent, honest, anyone):
            await board.close()


async def test_a_refused_verdict_forfeits_the_bond_drops_the_result_and_reopens(net: Net) -> None:
    requester = net.a.board(await net.funded())
    bogus, honest = net.b.board(await net.funded()), net.b.board(await net.funded())
    refund_to = (await net.funded()).pubkey()
    payout = bytes((await net.funded()).pubkey())
    try:
        _request, envelope, _tx = await _requested(net, requester, bogus.address, refund_to)
        request_id = envelope.message_id
        claim = await bogus.claim(request_id, payout)
        result = _result(request_id, claim, output=b"wrong")
        result_env = await net.b.sent_by(await bogus.submit_result(request_id, result.encode()))
        submitted_at = (await bogus.claim_status(request_id)).submitted_at
        assert submitted_at is not None
        to_a, to_b = _verdicts(result_env, result, submitted_at, RefusalReason.OUTPUT_MISMATCH)
        refund_before = await net.balance(refund_to)
        await net.b.deliver(to_b)
        assert await net.balance(refund_to) - refund_before == BOND
        assert (await honest.claim_status(request_id)).state is ServeState.OPEN
        await net.a.deliver(result_env)
        await net.a.deliver(to_a)
        assert (await requester.task_status(request_id)).state is TaskState.OPEN  # that result is dropped
        second = await honest.claim(request_id, payout)
        assert second.claimant == honest.account and second.tx is not None
    finally:
        for board in (requester, bogus, honest):
            await board.close()


async def test_the_driver_builds_v2_boards_read_only_without_a_worker(net: Net) -> None:
    driver = SolanaDriver("solana", net.b.chain())
    reader = driver.serving_board_v2(None)
    try:
        assert isinstance(reader, SolanaTaskBoardV2) and reader.account == bytes(32)
        assert (await reader.claim_status(b"\x01" * 32)).state is ServeState.NONE
        with pytest.raises(TaskBoardError, match="read-only"):
            await reader.withdraw(b"\x01" * 32)
    finally:
        await reader.close()


# --- reclaim and releaseBond: deadline + 1,800 s on a moved clock ---------------------------------


async def test_reclaim_and_release_bond_after_deadline_and_grace_claims_after_the_deadline_refused(
        movable_clock: MovableClock) -> None:
    async with running_solana_localnet_in_process(slot_ms=30, finality_slots=8) as server:
        async with AsyncClient(server.rpc_url, commitment=Confirmed) as client:
            committee, shares = deal(4, 3, epoch=EPOCH)
            side = await _deployed(client, server.rpc_url, server.ws_url, DOMAIN_B, committee, shares)
            keys = [await airdropped(client) for _ in range(4)]
            requester, worker, anyone, refund = keys
            boards = [side.board(k) for k in (requester, worker, anyone)]
            requester_board, worker_board, anyone_board = boards
            try:
                now = await anyone_board.chain_time()
                deadline = now + 20
                # A request paid here (to a chain that is not here: only its reclaim matters).
                paid = TaskRequestV2("echo", MAX_FEE, deadline, auction_window=0, start_bps=10_000, claim_window=60,
                                     bond=BOND, refund_to=EVM_BOARD, input=b"hi")
                sent = await requester_board.request_task(dst_domain=EVM_DOMAIN, worker_board=EVM_BOARD,
                                                          request=paid)
                # Two requests served here: one answered and never given a verdict, one never claimed.
                served = TaskRequestV2("echo", 10**15, deadline, auction_window=0, start_bps=10_000, claim_window=60,
                                       bond=BOND, refund_to=bytes(refund.pubkey()), input=b"hi")
                answered_env, idle_env = (Envelope(MessageKind.TASK_REQUEST, nonce, EVM_DOMAIN, EVM_BOARD, DOMAIN_B,
                                                   worker_board.address, served.encode()) for nonce in (1, 2))
                for env in (answered_env, idle_env):
                    await side.deliver(env)
                claim = await worker_board.claim(answered_env.message_id, EVM_BOARD)
                assert claim.price == 10**15  # auction_window 0: max_fee at once
                await worker_board.submit_result(answered_env.message_id,
                                                 _result(answered_env.message_id, claim, b"hi").encode())

                with pytest.raises(ReclaimRefused) as early:
                    await anyone_board.reclaim(sent.request_id)
                assert early.value.error == "DEADLINE_NOT_PASSED"
                with pytest.raises(BondRefused) as too_soon:
                    await anyone_board.release_bond(answered_env.message_id)
                assert too_soon.value.error == "DEADLINE_NOT_PASSED"

                # Past the deadline: no claim counts any more.
                movable_clock.offset = deadline + 1 - now
                await _until_chain_time_passes(anyone_board, deadline)
                with pytest.raises(RequestExpired):
                    await worker_board.claim(idle_env.message_id, EVM_BOARD)
                # Past deadline + grace: anyone reclaims for the requester and releases the claimant's bond.
                movable_clock.offset = deadline + SETTLEMENT_GRACE_SECONDS + 1 - now
                await _until_chain_time_passes(anyone_board, deadline + SETTLEMENT_GRACE_SECONDS)
                before = (await client.get_balance(requester.pubkey(), Confirmed)).value
                await anyone_board.reclaim(sent.request_id)
                assert (await client.get_balance(requester.pubkey(), Confirmed)).value - before == MAX_FEE
                status = await requester_board.task_status(sent.request_id)
                assert status.state is TaskState.REFUNDED and status.refund == MAX_FEE
                with pytest.raises(ReclaimRefused) as twice:
                    await anyone_board.reclaim(sent.request_id)
                assert twice.value.error == "TASK_NOT_REFUNDABLE"

                before = (await client.get_balance(worker.pubkey(), Confirmed)).value
                await anyone_board.release_bond(answered_env.message_id)
                assert (await client.get_balance(worker.pubkey(), Confirmed)).value - before == BOND
                assert (await anyone_board.claim_status(answered_env.message_id)).state is ServeState.CLOSED
                with pytest.raises(BondRefused) as released:
                    await anyone_board.release_bond(answered_env.message_id)
                assert released.value.error == "NO_RESULT_PENDING"
            finally:
                for board in boards:
                    await board.close()
