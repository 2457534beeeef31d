"""The SDK refuses malformed task requests before anything is sent, with an error saying what to do."""

from __future__ import annotations

import time

import pytest

from relay.envelope import keccak256
from relay.tasks.client import MAX_INLINE_INPUT, TaskRequestError, build_request
from relay.tasks.payloads import DataMode, TaskRequest


def deadline() -> int:
    return int(time.time()) + 60


def test_inline_request_round_trips():
    request = build_request("sentiment", "What a lovely day", 10**15, deadline())
    assert request.input == b"What a lovely day"
    assert TaskRequest.decode(request.encode()) == request


def test_largest_inline_input_fits_and_one_more_byte_is_refused_with_the_fix():
    assert len(build_request("echo", b"x" * MAX_INLINE_INPUT, 1, deadline()).encode()) == 512
    with pytest.raises(TaskRequestError, match="inline input is limited to 469 bytes.*input_uri="):
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
