"""The SDK's v2 task handle against scripted boards: the events a v2 task goes through (claims,
an expired claim, a refused result, completion with price and refund), and the v2 request checks."""

from __future__ import annotations

import time

import pytest

from relay.envelope import Envelope
from relay.interfaces import ClaimStatus, ServeState, TaskState, TaskStatusV2
from relay.protocol import MessageKind
from relay.tasks.client import AuctionTerms, TaskHandleV2, TaskRequestError, build_request_v2

REFUND = b"\x01" * 32
A, B = b"\x0a" * 32, b"\x0b" * 32  # two claimant accounts
R1, R2 = b"\x21" * 32, b"\x22" * 32  # two results


def test_v2_request_checks_before_sending() -> None:
    deadline = int(time.time()) + 60
    request = build_request_v2("sentiment", "hi", 1000, deadline, AuctionTerms(window_s=1, bond=5), REFUND)
    assert (request.auction_window, request.start_bps, request.claim_window, request.bond, request.refund_to) == (
        1, 5000, 60, 5, REFUND)
    with pytest.raises(TaskRequestError, match="start_bps"):
        build_request_v2("sentiment", "hi", 1000, deadline, AuctionTerms(start_bps=10_001), REFUND)
    with pytest.raises(TaskRequestError, match="claim_window_s"):
        build_request_v2("sentiment", "hi", 1000, deadline, AuctionTerms(claim_window_s=0), REFUND)
    with pytest.raises(TaskRequestError, match="410 bytes"):
        build_request_v2("sentiment", "x" * 411, 1000, deadline, AuctionTerms(), REFUND)
    with pytest.raises(TaskRequestError, match="refund_to is zero"):
        build_request_v2("sentiment", "hi", 1000, deadline, AuctionTerms(), bytes(32))


class _Chain:
    async def is_delivered(self, message_id: bytes, envelope: object = None) -> bool:
        return True


class _Client:
    def _chain(self, name: str) -> _Chain:
        return _Chain()


class _Script:
    """Both boards, moving through a scripted list of (serving state, requester state) per poll."""

    def __init__(self, steps: list[tuple[ClaimStatus, TaskState]]) -> None:
        self.steps, self.i = steps, 0

    def _step(self):
        return self.steps[min(self.i, len(self.steps) - 1)]

    async def claim_status(self, request_id: bytes) -> ClaimStatus:
        return self._step()[0]

    async def result_recorded(self, result_id: bytes) -> bool:
        return result_id == R2

    async def task_status(self, request_id: bytes) -> TaskStatusV2:
        state = self._step()[1]
        self.i += 1
        done = state is TaskState.COMPLETED
        return TaskStatusV2(request_id, state, deadline=int(time.time()) + 300, max_fee=1000,
                            result_id=R2 if done else None, payout=b"\x07" * 32 if done else None,
                            price=700 if done else None, refund=300 if done else None)


def _status(state: ServeState, claimant: bytes | None = None, deadline: int = 0, result: bytes | None = None):
    return ClaimStatus(b"\x00" * 32, state, claimant=claimant, price=600 if claimant == A else 700,
                       claim_deadline=deadline, result_id=result)


async def test_v2_events_follow_claims_refusals_and_completion() -> None:
    request = build_request_v2("sentiment", "hi", 1000, int(time.time()) + 300, AuctionTerms(), REFUND)
    envelope = Envelope(MessageKind.TASK_REQUEST, 1, 31337, bytes(32), 900, bytes(32), request.encode())
    script = _Script([
        (_status(ServeState.OPEN), TaskState.OPEN),
        (_status(ServeState.CLAIMED, A, 10), TaskState.OPEN),
        (_status(ServeState.CLAIMED, B, 20), TaskState.OPEN),  # A's claim expired, B claimed
        (_status(ServeState.ANSWERED, B, 20, R1), TaskState.OPEN),
        (_status(ServeState.OPEN), TaskState.OPEN),  # R1 refused: re-opened
        (_status(ServeState.CLAIMED, A, 30), TaskState.OPEN),
        (_status(ServeState.ANSWERED, A, 30, R2), TaskState.OPEN),
        (_status(ServeState.CLOSED, A, 30, R2), TaskState.COMPLETED),
    ])
    handle = TaskHandleV2(_Client(), "evm", "solana", request, envelope, "0xtx", script, script,  # type: ignore[arg-type]
                          no_worker_after_s=None)
    events = [event async for event in handle.events(poll=0.0, timeout=5)]
    assert [e.stage for e in events] == [
        "requested", "request_delivered", "claimed", "claim_expired", "claimed", "result_submitted",
        "result_refused", "claimed", "result_submitted", "result_delivered", "completed"]
    claimed = [e.detail for e in events if e.stage == "claimed"]
    assert [c["worker"] for c in claimed] == ["0x" + A.hex(), "0x" + B.hex(), "0x" + A.hex()]
    assert next(e for e in events if e.stage == "result_refused").detail["result_id"] == "0x" + R1.hex()
    assert events[-1].detail["price"] == 700 and events[-1].detail["refund"] == 300
    assert handle.result_ids == [R1, R2]


@pytest.mark.parametrize("replaced_by", [
    (ServeState.CLAIMED, B, 20, None),  # the new claim was made between two polls
    (ServeState.ANSWERED, B, 20, R2),  # ... and already answered
    (ServeState.CLAIMED, A, 20, None),  # the same worker claimed again after its claim expired
], ids=["claimed", "claimed-and-answered", "same-claimant-again"])
async def test_v2_a_claim_replaced_between_two_polls_is_reported_expired(replaced_by) -> None:
    """The SDK polls: a claim that expires and a new claim that lands (and even its result) between
    two polls are seen only as a changed claim. Every change without a result of the old claim is
    reported as claim_expired before the new claimed (a flaky e2e once saw two claimed in a row)."""
    request = build_request_v2("sentiment", "hi", 1000, int(time.time()) + 300, AuctionTerms(), REFUND)
    envelope = Envelope(MessageKind.TASK_REQUEST, 1, 31337, bytes(32), 900, bytes(32), request.encode())
    script = _Script([
        (_status(ServeState.CLAIMED, A, 10), TaskState.OPEN),
        (_status(*replaced_by), TaskState.OPEN),
        (_status(ServeState.CLOSED, replaced_by[1], 20, R2), TaskState.COMPLETED),
    ])
    handle = TaskHandleV2(_Client(), "evm", "solana", request, envelope, "0xtx", script, script,  # type: ignore[arg-type]
                          no_worker_after_s=None)
    events = [event async for event in handle.events(poll=0.0, timeout=5)]
    stages = [e.stage for e in events]
    assert stages[:5] == ["requested", "request_delivered", "claimed", "claim_expired", "claimed"], stages
    assert stages[-1] == "completed" and stages.count("claim_expired") == 1, stages
    assert next(e for e in events if e.stage == "claim_expired").detail["worker"] == "0x" + A.hex()
    assert [e.detail["worker"] for e in events if e.stage == "claimed"] == ["0x" + A.hex(), "0x" + replaced_by[1].hex()]
