"""The worker settles up after the tasks it claimed (docs/TASKS.md "Worker", "Settling up"): bond
release for a result that got no verdict, withdrawal of held credits, and closing of the settled
record on a board with rent to give back (Solana's close_settled), against fake boards with a clock
of their own and a real store on both engines. Also: restart continuation, a failing board call on
one task, and tasks the worker did not claim itself (never acted for)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.config import WorkerSection
from relay.daemons.worker import settings_from_section
from relay.interfaces import ClaimStatus, ServeState, SettledCloser
from relay.tasks.board import BondRefused
from relay.tasks.executors import ExecutorRegistry
from relay.tasks.worker import SETTLE_GIVE_UP_S, WorkerSettings, WorkerV2
from relay.tasks.worker_store import TaskStage, WorkerStore

pytestmark = pytest.mark.timeout(60)

BOARD_DOMAIN, REQUESTER_DOMAIN = 900, 31337
ACCOUNT, OTHER = b"\x0c" * 32, b"\x0d" * 32
PAYOUT = bytes(12) + b"\x77" * 20
KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
DEADLINE, BOND = 1_000, 10**6


class Clock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeBoard:
    """A serving board's settle side (EVM-like: no rent, account-wide credits): claim records, bond
    release after deadline + grace, withdraw of held credits. Every call is recorded."""

    name, domain, address, account = "fake", BOARD_DOMAIN, b"\x0b" * 32, ACCOUNT
    GRACE = 300

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.status: dict[bytes, ClaimStatus] = {}
        self.credits: dict[bytes, int] = {}  # request id -> credit held for ACCOUNT
        self.calls: list[tuple[str, bytes]] = []
        self.fail: set[bytes] = set()  # request ids whose every call raises (an RPC outage)

    def _call(self, name: str, rid: bytes) -> None:
        self.calls.append((name, rid))
        if rid in self.fail:
            raise ConnectionError("rpc endpoint timed out")

    def calls_of(self, name: str) -> list[bytes]:
        return [rid for n, rid in self.calls if n == name]

    async def chain_time(self) -> int:
        return int(self.clock())

    async def claim_status(self, rid: bytes) -> ClaimStatus:
        self._call("claim_status", rid)
        return self.status.get(rid, ClaimStatus(rid, ServeState.NONE))

    async def release_bond(self, rid: bytes) -> str:
        self._call("release_bond", rid)
        status = self.status[rid]
        if status.state is not ServeState.ANSWERED:
            raise BondRefused("releasing the bond", "NoResultPending(...)")
        if self.clock() <= status.deadline + self.GRACE:
            raise BondRefused("releasing the bond", "VerdictWaitNotOver(...)")
        self.status[rid] = dataclasses.replace(status, state=ServeState.CLOSED)
        return f"0xrelease{len(self.calls)}"

    async def expire_claim(self, rid: bytes) -> str:
        self._call("expire_claim", rid)
        status = self.status[rid]
        if status.state is not ServeState.CLAIMED or (status.claim_deadline or 0) >= self.clock():
            raise BondRefused("expiring the claim", "ClaimNotExpired(...)")
        self.status[rid] = dataclasses.replace(status, state=ServeState.OPEN, claimant=None)
        return f"0xexpire{len(self.calls)}"

    async def withdraw(self, rid: bytes) -> str | None:
        self._call("withdraw", rid)
        if not self.credits.pop(rid, 0):
            return None
        return f"0xwithdraw{len(self.calls)}"


class RentBoard(FakeBoard):
    """A Solana-like board: per-request serve records that close (rent back) once settled, no credit
    held; a closed record reads as the receipt's open request with no claim counted."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.closed: list[bytes] = []

    async def close_settled(self, rid: bytes, *, serving_only: bool = False) -> list[str]:
        assert serving_only, "a worker closes its serve account only"
        self._call("close_settled", rid)
        status = self.status.get(rid)
        if status is None or status.claims == 0:
            return []  # already closed: nothing to close
        settled = status.state is ServeState.CLOSED or (status.state is ServeState.OPEN and self.clock() > DEADLINE)
        if not settled or self.credits.get(rid):
            return []
        self.status[rid] = ClaimStatus(rid, ServeState.OPEN, deadline=status.deadline, claims=0)
        self.closed.append(rid)
        return [f"0xclose{len(self.closed)}"]


def answered(rid: bytes, claimant: bytes = ACCOUNT, state: ServeState = ServeState.ANSWERED) -> ClaimStatus:
    return ClaimStatus(rid, state, deadline=DEADLINE, bond=BOND, claimant=claimant, payout=PAYOUT, price=5,
                       claim_deadline=DEADLINE - 100, claims=1)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path):
    db = (str(tmp_path / "worker.db") if request.param == "sqlite"
          else request.getfixturevalue("postgres").create_database("worker_settle"))
    store = await WorkerStore.open(db)
    yield store
    await store.close()


def worker(board: FakeBoard, store: WorkerStore, clock: Clock) -> WorkerV2:
    return WorkerV2(board, ExecutorRegistry.load(), KEY, {REQUESTER_DOMAIN: PAYOUT}, store,  # type: ignore[arg-type]
                    WorkerSettings(settle_interval_s=10.0), clock=clock)


async def task(store: WorkerStore, n: int, stage: TaskStage = TaskStage.DONE,
               claimant: bytes | None = ACCOUNT) -> bytes:
    """A task in the store at `stage`, claimed by `claimant` (None: never claimed)."""
    rid = bytes([n]) * 32
    await store.add(rid, REQUESTER_DOMAIN, "echo", b"envelope", "0xdeliver", n, DEADLINE, now=1.0)
    await store.add_v2(rid, 100)
    if claimant is not None:
        await store.claimed(rid, claimant, PAYOUT, 5, BOND, DEADLINE - 100, "0xclaim")
    if stage is not TaskStage.CLAIMED:
        await store.finish(rid, stage, "")
    return rid


async def passes(w: WorkerV2, clock: Clock, count: int = 1, step: float = 4_000.0) -> None:
    """Settle passes with the clock moved past every wait between them."""
    for _ in range(count):
        await w.settle_pass()
        clock.now += step


async def test_bond_of_a_result_with_no_verdict_is_released_after_deadline_and_grace_then_settled(store) -> None:
    clock = Clock(500)
    board = FakeBoard(clock)
    rid = await task(store, 1)
    board.status[rid] = answered(rid)
    w = worker(board, store, clock)
    await w.settle_pass()  # before the deadline: the verdict may still come; nothing sent
    assert board.calls_of("release_bond") == [] and (await store.settlement(rid)).state == "pending"
    clock.now = DEADLINE + 10  # past the deadline, inside the grace: the board refuses, tried later
    await w.settle_pass()
    assert board.calls_of("release_bond") == [rid]
    await w.settle_pass()  # not due again at once
    assert board.calls_of("release_bond") == [rid]
    record = await store.settlement(rid)
    assert "VerdictWaitNotOver" in record.reason and record.next_at > clock.now
    clock.now = DEADLINE + FakeBoard.GRACE + 1_000
    await w.settle_pass()
    record = await store.settlement(rid)
    assert record.done and record.release_tx and "no rent to close" in record.reason
    assert board.calls_of("release_bond") == [rid, rid] and board.calls_of("withdraw") == [rid]
    assert w.metrics.bonds_released._value.get() == 1
    await passes(w, clock, 2)
    assert board.calls_of("release_bond") == [rid, rid]  # done: never looked at again


async def test_a_held_credit_is_withdrawn_once_the_record_settled(store) -> None:
    clock = Clock(DEADLINE + 5)
    board = FakeBoard(clock)
    rid = await task(store, 2)
    board.status[rid] = answered(rid, state=ServeState.CLOSED)  # valid verdict: bond back, but held as credit
    board.credits[rid] = BOND
    w = worker(board, store, clock)
    await w.settle_pass()
    record = await store.settlement(rid)
    assert record.done and record.withdrawn and record.withdraw_tx
    assert board.calls_of("withdraw") == [rid] and board.credits == {}
    assert w.metrics.credits_withdrawn._value.get() == 1


async def test_nothing_to_withdraw_refused_by_the_board_counts_as_done(store) -> None:
    clock = Clock(DEADLINE + 5)
    board = FakeBoard(clock)
    rid = await task(store, 3)
    board.status[rid] = answered(rid, state=ServeState.CLOSED)

    async def refusing(request_id: bytes) -> str | None:
        board.calls.append(("withdraw", request_id))
        raise BondRefused("withdrawing", "NothingToWithdraw(0x..)")

    board.withdraw = refusing  # type: ignore[method-assign]
    w = worker(board, store, clock)
    await w.settle_pass()
    record = await store.settlement(rid)
    assert record.done and record.withdrawn and record.withdraw_tx is None
    assert w.metrics.credits_withdrawn._value.get() == 0


async def test_on_a_board_with_rent_the_settled_record_is_closed_and_an_expired_own_claim_is_expired_first(
        store) -> None:
    clock = Clock(DEADLINE + 5)
    board = RentBoard(clock)
    assert isinstance(board, SettledCloser) and not isinstance(FakeBoard(clock), SettledCloser)
    valid = await task(store, 4)
    board.status[valid] = answered(valid, state=ServeState.CLOSED)
    ran_out = await task(store, 5, TaskStage.BOND_LOST)
    board.status[ran_out] = answered(ran_out, state=ServeState.CLAIMED)  # our claim ran out, nobody expired it
    w = worker(board, store, clock)
    await w.settle_pass()
    assert sorted(board.closed) == sorted([valid, ran_out])
    assert board.calls_of("expire_claim") == [ran_out]
    for rid in (valid, ran_out):
        record = await store.settlement(rid)
        assert record.done and record.close_txs and "rent back" in record.reason
    assert w.metrics.accounts_closed._value.get() == 2
    assert (await store.settlement(ran_out)).expire_tx is not None


async def test_without_rent_to_close_an_expired_own_claim_is_left_alone(store) -> None:
    clock = Clock(DEADLINE + 5)
    board = FakeBoard(clock)
    rid = await task(store, 6, TaskStage.BOND_LOST)
    board.status[rid] = answered(rid, state=ServeState.CLAIMED)
    w = worker(board, store, clock)
    await w.settle_pass()
    record = await store.settlement(rid)
    assert record.done and "forfeited" in record.reason and board.calls_of("expire_claim") == []


async def test_a_restart_continues_and_a_close_that_landed_unrecorded_is_not_sent_again(store) -> None:
    clock = Clock(500)
    board = RentBoard(clock)
    rid = await task(store, 7)
    board.status[rid] = answered(rid)
    await worker(board, store, clock).settle_pass()  # waiting for the verdict
    assert (await store.settlement(rid)).state == "pending"
    # "Restart": a new worker on the same store, past deadline + grace; the bond is released.
    clock.now = DEADLINE + FakeBoard.GRACE + 1
    w = worker(board, store, clock)
    original = board.close_settled

    async def crash_after_landing(request_id: bytes, *, serving_only: bool = False) -> list[str]:
        await original(request_id, serving_only=serving_only)  # the close lands on chain ...
        raise ConnectionError("connection reset")  # ... but its answer never reaches us

    board.close_settled = crash_after_landing  # type: ignore[method-assign]
    await w.settle_pass()
    record = await store.settlement(rid)
    assert record.release_tx and record.withdrawn and not record.done and "ConnectionError" in record.reason
    assert board.closed == [rid]
    board.close_settled = original  # type: ignore[method-assign]
    w2 = worker(board, store, clock)  # another restart
    await passes(w2, clock, 2)
    record = await store.settlement(rid)
    assert record.done and "closed" in record.reason
    assert board.closed == [rid] and board.calls_of("release_bond") == [rid]
    assert board.calls_of("withdraw") == [rid]  # the withdraw recorded before the restart is not repeated


async def test_one_failing_task_never_blocks_the_others(store) -> None:
    clock = Clock(DEADLINE + FakeBoard.GRACE + 1)
    board = FakeBoard(clock)
    broken, fine = await task(store, 8), await task(store, 9)
    for rid in (broken, fine):
        board.status[rid] = answered(rid)
    board.fail.add(broken)
    w = worker(board, store, clock)
    await w.settle_pass()
    assert (await store.settlement(fine)).done and board.calls_of("release_bond") == [fine]
    failed = await store.settlement(broken)
    assert not failed.done and "rpc endpoint timed out" in failed.reason
    assert w.metrics.settle_errors._value.get() == 1
    board.fail.clear()  # the endpoint is back: settled on a later pass
    clock.now += 4_000
    await w.settle_pass()
    assert (await store.settlement(broken)).done and sorted(board.calls_of("release_bond")) == sorted([fine, broken])


async def test_only_tasks_it_claimed_itself_are_settled(store) -> None:
    clock = Clock(DEADLINE + FakeBoard.GRACE + 1)
    board = RentBoard(clock)
    # A row whose stored claim names another account (e.g. a store shared with, or written by, another
    # worker), a task never claimed, and a task we claimed that another worker answered after our claim.
    theirs = await task(store, 10, claimant=OTHER)
    board.status[theirs] = answered(theirs, claimant=OTHER)
    unclaimed = await task(store, 11, TaskStage.LOST, claimant=None)
    board.status[unclaimed] = answered(unclaimed, claimant=OTHER)
    taken_over = await task(store, 12, TaskStage.BOND_LOST)
    board.status[taken_over] = answered(taken_over, claimant=OTHER)  # answered by OTHER, no verdict
    w = worker(board, store, clock)
    await passes(w, clock, 3)
    touched = {rid for _, rid in board.calls}
    assert theirs not in touched and unclaimed not in touched
    assert await store.settlement(theirs) is None and await store.settlement(unclaimed) is None
    # Another's result waiting for its verdict: its bond is not ours to release.
    assert board.calls_of("release_bond") == [] and board.calls_of("withdraw") == []
    assert (await store.settlement(taken_over)).state == "pending"


async def test_without_rent_a_task_another_account_took_over_is_done_and_nothing_is_sent(store) -> None:
    clock = Clock(DEADLINE + FakeBoard.GRACE + 1)
    board = FakeBoard(clock)
    rid = await task(store, 14, TaskStage.BOND_LOST)
    board.status[rid] = answered(rid, claimant=OTHER)  # our claim ran out; OTHER answered, no verdict yet
    w = worker(board, store, clock)
    await w.settle_pass()
    record = await store.settlement(rid)
    assert record.done and "nothing is owed" in record.reason
    assert board.calls_of("release_bond") == [] and board.calls_of("withdraw") == []


async def test_a_record_that_never_settles_is_given_up_after_a_bound(store) -> None:
    clock = Clock(DEADLINE + 5)
    board = RentBoard(clock)
    rid = await task(store, 15, TaskStage.BOND_LOST)
    board.status[rid] = answered(rid, claimant=OTHER)  # another's result, never given a verdict nor released
    w = worker(board, store, clock)
    await passes(w, clock, 3)
    assert (await store.settlement(rid)).state == "pending"
    clock.now += SETTLE_GIVE_UP_S
    await w.settle_pass()
    record = await store.settlement(rid)
    assert record.done and record.reason.startswith("given up") and board.closed == []


async def test_an_active_task_is_not_settled(store) -> None:
    clock = Clock(DEADLINE + FakeBoard.GRACE + 1)
    board = FakeBoard(clock)
    rid = await task(store, 13, TaskStage.CLAIMED)
    board.status[rid] = answered(rid, state=ServeState.CLAIMED)
    w = worker(board, store, clock)
    assert await w.settle_pass() == 0 and board.calls == []


def test_settle_interval_setting_and_its_validation() -> None:
    assert WorkerSection().settle_interval_s == 60.0
    assert settings_from_section(WorkerSection(settle_interval_s=5)).settle_interval_s == 5.0
    for bad in (0, 0.5, -1, 86_401):
        with pytest.raises(ValueError, match="settle_interval_s"):
            WorkerSection(settle_interval_s=bad)


async def test_a_bond_whose_deadline_is_further_than_the_give_up_bound_is_still_released(store) -> None:
    # A request may have a deadline days away: our result then waits for its verdict (or for
    # deadline + grace, to release the bond) longer than SETTLE_GIVE_UP_S after the task ended. The
    # bound counts from the deadline, so the bond is not abandoned meanwhile.
    clock = Clock(500)
    board = FakeBoard(clock)
    far = int(500 + 2 * SETTLE_GIVE_UP_S)
    rid = bytes([16]) * 32
    await store.add(rid, REQUESTER_DOMAIN, "echo", b"envelope", "0xdeliver", 16, far, now=1.0)
    await store.add_v2(rid, 100)
    await store.claimed(rid, ACCOUNT, PAYOUT, 5, BOND, far - 100, "0xclaim")
    await store.finish(rid, TaskStage.DONE, "")
    board.status[rid] = dataclasses.replace(answered(rid), deadline=far, claim_deadline=far - 100)
    w = worker(board, store, clock)
    await w.settle_pass()
    clock.now += SETTLE_GIVE_UP_S + 1  # past the bound since the task ended, well before the deadline
    await w.settle_pass()
    assert (await store.settlement(rid)).state == "pending"
    board.fail.add(rid)  # a passing outage then does not give it up either
    clock.now += 1_000
    await w.settle_pass()
    assert (await store.settlement(rid)).state == "pending"
    board.fail.clear()
    clock.now = far + FakeBoard.GRACE + 1
    await passes(w, clock, 1)
    record = await store.settlement(rid)
    assert record.done and record.release_tx and board.calls_of("release_bond") == [rid]
