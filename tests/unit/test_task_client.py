"""The SDK refuses malformed task requests before anything is sent, with an error saying what to do;
a task nobody claims says so (no_worker). Task protocol v2 (the SDK sends no v1 request)."""

from __future__ import annotations

import time

import pytest

from relay.envelope import keccak256
from relay.tasks.client import AuctionTerms, TaskRequestError, build_request_v2
from relay.tasks.payloads import MAX_INLINE_INPUT_LEN_V2 as MAX_INLINE_INPUT
from relay.tasks.payloads import DataMode, TaskRequestV2

REFUND = b"\x01" * 32  # refund_to on the serving chain


def deadline() -> int:
    return int(time.time()) + 60


def build_request(executor, input, max_fee, deadline, input_uri=None, input_hash=None, allow_unknown_executor=False):
    return build_request_v2(executor, input, max_fee, deadline, AuctionTerms(), REFUND, input_uri, input_hash,
                            allow_unknown_executor)


def test_inline_request_round_trips():
    request = build_request("sentiment", "What a lovely day", 10**15, deadline())
    assert request.input == b"What a lovely day"
    assert TaskRequestV2.decode(request.encode()) == request


def test_largest_inline_input_fits_and_one_more_byte_is_refused_with_the_fix():
    assert len(build_request("echo", b"x" * MAX_INLINE_INPUT, 1, deadline()).encode()) == 512
    with pytest.raises(TaskRequestError, match="inline input is limited to 410 bytes.*input_uri="):
        build_request("echo", b"x" * (MAX_INLINE_INPUT + 1), 1, deadline())


def test_unknown_executor_is_refused_unless_explicitly_allowed():
    with pytest.raises(TaskRequestError, match="unknown executor 'summarize'; known: .*sentiment"):
        build_request("summarize", "x", 1, deadline())
    assert build_request("summarize", "x", 1, deadline(), allow_unknown_executor=True).executor == "summarize"


@pytest.mark.parametrize("executor", ["", "x" * 17, "has space", "naïve"])
def test_malformed_executor_ids_are_refused(executor):
    with pytest.raises(TaskRequestError):
        build_request(executor, "x", 1, deadline(), allow_unknown_executor=True)


@pytest.mark.parametrize("uri,message", [
    ("ftp://example.com/x", "unsupported scheme"),
    ("https://", "after the scheme"),
    ("https://example.com/a b", "whitespace"),
])
def test_bad_uris_are_refused(uri, message):
    with pytest.raises(TaskRequestError, match=message):
        build_request("echo", b"content", 1, deadline(), input_uri=uri)


def test_by_reference_hashes_the_content():
    request = build_request("echo", b"big content", 1, deadline(), input_uri="https://example.com/in.txt")
    assert request.input_mode is DataMode.URI and request.input_hash == keccak256(b"big content")


def test_deadline_in_the_past_and_negative_fee_are_refused():
    with pytest.raises(TaskRequestError, match="not in the future"):
        build_request("echo", "x", 1, int(time.time()) - 1)
    with pytest.raises(TaskRequestError, match="non-negative"):
        build_request("echo", "x", -1, deadline())


class _Chain:
    def __init__(self, delivered: bool) -> None:
        self.delivered = delivered

    async def is_delivered(self, message_id: bytes, envelope: object = None) -> bool:
        return self.delivered


class _Boards:
    """The requester's board (an open task, far from its deadline) and the serving one (no claim;
    no record at all until the request is delivered)."""

    def __init__(self, delivered: bool) -> None:
        self.delivered = delivered

    async def task_status(self, request_id: bytes):
        from relay.interfaces import TaskState, TaskStatusV2

        return TaskStatusV2(request_id, TaskState.OPEN, deadline=int(time.time()) + 300, max_fee=10)

    async def claim_status(self, request_id: bytes):
        from relay.interfaces import ClaimStatus, ServeState

        return ClaimStatus(request_id, ServeState.OPEN if self.delivered else ServeState.NONE)

    async def result_recorded(self, result_id: bytes) -> bool:
        return False


class _Client:
    def __init__(self, delivered: bool) -> None:
        self.chain = _Chain(delivered)

    def _chain(self, name: str) -> _Chain:
        return self.chain


def _unanswered_handle(delivered: bool, no_worker_after_s: float | None):
    from relay.envelope import Envelope
    from relay.protocol import MessageKind
    from relay.tasks.client import TaskHandleV2

    request = build_request("sentiment", "x", 1, deadline())
    envelope = Envelope(kind=MessageKind.TASK_REQUEST, src_domain=31337, src_sender=bytes(32), dst_domain=13375,
                        dst_receiver=bytes(32), nonce=1, payload=request.encode())
    boards = _Boards(delivered)
    return TaskHandleV2(_Client(delivered), "evm", "solana", request, envelope, "0xtx", boards, boards,
                        no_worker_after_s=no_worker_after_s)


async def test_no_worker_event_and_error_name_the_executor_and_chain():
    from relay.tasks.client import NoWorkerError

    handle = _unanswered_handle(delivered=True, no_worker_after_s=0.3)
    stages = []
    async for event in handle.events(poll=0.05, timeout=1.0 + 0.3):
        stages.append(event.stage)
        if event.stage == "no_worker":
            assert event.detail["executor"] == "sentiment" and event.detail["chain"] == "solana"
            assert event.elapsed_s >= 0.3
            break
    assert stages == ["requested", "request_delivered", "no_worker"]
    with pytest.raises(NoWorkerError, match=r"no worker on chain 'solana' .*executor 'sentiment'.*relay worker --chain solana"):
        await handle.result(timeout=5)


async def test_no_worker_says_when_the_request_never_reached_the_chain():
    from relay.tasks.client import NoWorkerError

    handle = _unanswered_handle(delivered=False, no_worker_after_s=0.2)
    with pytest.raises(NoWorkerError, match=r"has not reached chain 'solana'.*relayer and the attesters"):
        await handle.result(timeout=5)


async def test_no_worker_after_none_waits_silently():
    from relay.tasks.client import TaskTimeoutError

    handle = _unanswered_handle(delivered=True, no_worker_after_s=None)
    with pytest.raises(TaskTimeoutError):
        async for event in handle.events(poll=0.05, timeout=0.5):
            assert event.stage != "no_worker"
