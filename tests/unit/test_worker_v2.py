"""The task worker on a v2 board (claim at its own price, execute, submit as the claimant), against
a fake ServingBoardV2 with its own clock, the real sentiment/echo executors and a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.backoff import Backoff
from relay.envelope import Envelope
from relay.interfaces import Claim, ClaimStatus, IncomingRequestV2, ServeState
from relay.protocol import MessageKind
from relay.tasks.board import ClaimLost, ClaimNotHeld, ResultAlreadySubmitted
from relay.tasks.executors import ExecutorRegistry
from relay.tasks.payloads import TaskRequestV2, TaskResultV2, auction_price
from relay.tasks.worker import WorkerSettings, WorkerV2, claim_time
from relay.tasks.worker_store import TaskStage, WorkerStore

pytestmark = pytest.mark.timeout(60)

REQUESTER_DOMAIN, BOARD_DOMAIN = 31337, 900
BOARD, REQUESTER_BOARD = b"\x0b" * 32, bytes(12) + b"\xaa" * 20
ACCOUNT, OTHER = b"\x0c" * 32, b"\x0d" * 32
PAYOUT = bytes(12) + b"\x77" * 20
KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
MAX_FEE = 1_000_000


class FakeBoardV2:
    """One serving board: a clock of its own, claims at the auction price, one claimant at a time."""

    name, domain, address, account = "fake", BOARD_DOMAIN, BOARD, ACCOUNT

    def __init__(self, clock_offset: float = 0.0) -> None:
        self.offset = clock_offset
        self.requests: dict[bytes, tuple[TaskRequestV2, int]] = {}
        self.status: dict[bytes, ClaimStatus] = {}
        self.claims: list[tuple[bytes, int]] = []  # (request id, price)
        self.submissions: list[TaskResultV2] = []
        self.lose_next_claim_to: bytes | None = None

    async def chain_time(self) -> int:
        return int(time.time() + self.offset)

    def deliver(self, request: TaskRequestV2, auction_start: int) -> IncomingRequestV2:
        env = Envelope(MessageKind.TASK_REQUEST, len(self.requests), REQUESTER_DOMAIN, REQUESTER_BOARD, BOARD_DOMAIN,
                       BOARD, request.encode())
        self.requests[env.message_id] = (request, auction_start)
        self.status[env.message_id] = ClaimStatus(env.message_id, ServeState.OPEN, deadline=request.deadline,
                                                  bond=request.bond)
        return IncomingRequestV2(env.message_id, env, request, auction_start, "0xdeliver", 1, "1")

    async def claim_status(self, request_id: bytes) -> ClaimStatus:
        return self.status[request_id]

    async def claim(self, request_id: bytes, payout: bytes) -> Claim:
        request, start = self.requests[request_id]
        status = self.status[request_id]
        now = await self.chain_time()
        if status.state is ServeState.CLAIMED and status.claimant == ACCOUNT:
            return Claim(request_id, ACCOUNT, status.payout, status.price, status.claim_deadline, request.bond, None)
        if self.lose_next_claim_to is not None:
            self.status[request_id] = ClaimStatus(request_id, ServeState.CLAIMED, claimant=self.lose_next_claim_to,
                                                  claim_deadline=now + 1, deadline=request.deadline)
            self.lose_next_claim_to = None
            raise ClaimLost("the claim", "AlreadyClaimed(...)", error="AlreadyClaimed")
        if status.state is not ServeState.OPEN and not (
                status.state is ServeState.CLAIMED and (status.claim_deadline or 0) < now):
            raise ClaimLost("the claim", "AlreadyClaimed(...)", error="AlreadyClaimed")
        price = auction_price(request.max_fee, request.start_bps, request.auction_window, start, now)
        deadline = min(now + request.claim_window, request.deadline)
        self.status[request_id] = ClaimStatus(request_id, ServeState.CLAIMED, claimant=ACCOUNT, payout=payout,
                                              price=price, claim_deadline=deadline, deadline=request.deadline)
        self.claims.append((request_id, price))
        return Claim(request_id, ACCOUNT, payout, price, deadline, request.bond, f"0xclaim{len(self.claims)}")

    async def submit_result(self, request_id: bytes, payload: bytes) -> str:
        status = self.status[request_id]
        if status.state is ServeState.ANSWERED:
            raise ResultAlreadySubmitted("the result", "ResultAlreadySubmitted(...)")
        if status.claimant != ACCOUNT or (status.claim_deadline or 0) < await self.chain_time():
            raise ClaimNotHeld("the result", "ClaimDeadlinePassed(...)", error="ClaimDeadlinePassed")
        result = TaskResultV2.decode(payload)
        assert (result.claimant, result.payout, result.price) == (status.claimant, status.payout, status.price)
        self.submissions.append(result)
        import dataclasses
        self.status[request_id] = dataclasses.replace(status, state=ServeState.ANSWERED)
        return f"0xsubmit{len(self.submissions)}"

    async def watch_requests(self, cursor):
        if False:
            yield

    async def close(self) -> None: ...


def request(max_fee: int = MAX_FEE, deadline_in: int = 60, window: int = 2, start_bps: int = 5000,
            claim_window: int = 30, text: bytes = b"What a lovely day") -> TaskRequestV2:
    return TaskRequestV2("sentiment", max_fee=max_fee, deadline=int(time.time()) + deadline_in, auction_window=window,
                         start_bps=start_bps, claim_window=claim_window, bond=10**6, refund_to=b"\x01" * 32,
                         input=text)


@pytest.fixture
async def store(tmp_path: Path):
    store = await WorkerStore.open(tmp_path / "worker.db")
    yield store
    await store.close()


def worker(board: FakeBoardV2, store: WorkerStore, **settings) -> WorkerV2:
    settings = {"min_time_left_s": 1.0, "claim_poll_s": 0.05, "backoff": Backoff(base=0.01, cap=0.05), **settings}
    return WorkerV2(board, ExecutorRegistry.load(), KEY, {REQUESTER_DOMAIN: PAYOUT}, store,  # type: ignore[arg-type]
                    WorkerSettings(**settings))


def test_claim_time_is_the_first_second_the_price_reaches_ours() -> None:
    terms = request(window=10, start_bps=5000)
    assert claim_time(terms, 100, 0) == 100
    assert claim_time(terms, 100, MAX_FEE) == 110
    assert claim_time(terms, 100, MAX_FEE + 1) is None
    at = claim_time(terms, 100, 730_000)
    assert auction_price(MAX_FEE, 5000, 10, 100, at) >= 730_000 > auction_price(MAX_FEE, 5000, 10, 100, at - 1)


async def test_claims_at_its_price_then_submits_the_result_carrying_the_claim(store) -> None:
    board = FakeBoardV2()
    incoming = board.deliver(request(window=2), auction_start=int(time.time()))
    w = worker(board, store, prices={"sentiment": 800_000})
    await w.ingest(incoming)
    started = time.monotonic()
    record = await w.process(incoming.request_id)
    assert record.stage is TaskStage.DONE, record.reason
    assert time.monotonic() - started >= 0.5  # it waited for the auction to reach its price
    [(rid, price)] = board.claims
    assert 800_000 <= price <= MAX_FEE
    [result] = board.submissions
    assert (result.claimant, result.payout, result.price) == (ACCOUNT, PAYOUT, price)
    result.verify_signature()
    claim = await store.claim_of(rid)
    assert claim.price == price and claim.claimant == ACCOUNT


async def test_a_request_below_its_price_is_skipped(store) -> None:
    board = FakeBoardV2()
    incoming = board.deliver(request(max_fee=1000), auction_start=int(time.time()))
    w = worker(board, store, prices={"sentiment": 1001})
    await w.ingest(incoming)
    record = await w.process(incoming.request_id)
    assert record.stage is TaskStage.SKIPPED and "below this worker's price 1001" in record.reason
    assert board.claims == []


async def test_losing_the_claim_race_is_normal_and_an_expired_claim_is_taken_over(store) -> None:
    board = FakeBoardV2()
    incoming = board.deliver(request(window=0), auction_start=int(time.time()))
    board.lose_next_claim_to = OTHER  # another worker's claim lands first, runs 1 s, never answers
    w = worker(board, store)
    await w.ingest(incoming)
    record = await w.process(incoming.request_id)
    assert record.stage is TaskStage.DONE, record.reason
    assert len(board.claims) == 1 and board.submissions[0].claimant == ACCOUNT


async def test_another_workers_answer_ends_the_task_lost(store) -> None:
    board = FakeBoardV2()
    incoming = board.deliver(request(window=0), auction_start=int(time.time()))
    board.status[incoming.request_id] = ClaimStatus(incoming.request_id, ServeState.CLOSED, claimant=OTHER)
    w = worker(board, store)
    await w.ingest(incoming)
    record = await w.process(incoming.request_id)
    assert record.stage is TaskStage.LOST and board.claims == []


async def test_a_restart_never_claims_again_and_never_submits_after_the_claim_deadline(store) -> None:
    board = FakeBoardV2()
    incoming = board.deliver(request(window=0), auction_start=int(time.time()))
    w = worker(board, store)
    await w.ingest(incoming)
    claim = await board.claim(incoming.request_id, PAYOUT)
    await store.claimed(incoming.request_id, claim.claimant, claim.payout, claim.price, claim.bond,
                        claim.claim_deadline, claim.tx)
    board.claims.clear()
    record = await worker(board, store).process(incoming.request_id)  # "restarted" at `claimed`
    assert record.stage is TaskStage.DONE and board.claims == [] and len(board.submissions) == 1

    late = board.deliver(request(window=0), auction_start=int(time.time()))
    await w.ingest(late)
    claim = await board.claim(late.request_id, PAYOUT)
    await store.claimed(late.request_id, claim.claimant, claim.payout, claim.price, claim.bond,
                        int(time.time()) - 1, claim.tx)  # its deadline passed while we were down
    record = await worker(board, store).process(late.request_id)
    assert record.stage is TaskStage.BOND_LOST and len(board.submissions) == 1


async def test_the_chain_clock_not_ours_decides(store) -> None:
    board = FakeBoardV2(clock_offset=-3600)  # the serving chain runs an hour behind us
    now = int(time.time()) - 3600
    terms = TaskRequestV2("echo", max_fee=MAX_FEE, deadline=now + 60, auction_window=0, start_bps=0, claim_window=30,
                          bond=1, refund_to=b"\x01" * 32, input=b"hi")
    incoming = board.deliver(terms, auction_start=now)
    w = worker(board, store)
    await w.ingest(incoming)
    record = await asyncio.wait_for(w.process(incoming.request_id), 20)
    assert record.stage is TaskStage.DONE, record.reason
