"""PROOF_ATTESTATION envelopes: how every attester and every relayer derives the same bytes from a
TASK_RESULT, and what an attester checks before co-signing them (docs/PROTOCOL.md
"PROOF_ATTESTATION envelope", docs/TASKS.md "Proof attestations: what attesters check").

The attestation is derived, not agreed on: every field comes from the result envelope and the time
of the block that carried it, so attesters sign identical bytes without a round of messages and a
relayer knows which message id to collect partials for as soon as it sees the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import aiohttp

from relay.envelope import Envelope, keccak256
from relay.errors import TesseraError
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.executors import ExecutorError, ExecutorRegistry
from relay.tasks.payloads import (
    AttestationMethod,
    ProofAttestation,
    ProofKind,
    TaskPayloadError,
    TaskRequest,
    TaskResult,
)
from relay.tasks.proofs import ProofVerifierRegistry

# Every attestation envelope has nonce 0: the committee has no nonce sequence, and the message id
# stays unique because the payload names the result it attests (result_id).
ATTESTATION_NONCE = 0
COMMITTEE_SENDER = bytes(32)

MAX_INPUT_BYTES = 4 * 1024 * 1024
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
FETCH_TIMEOUT_S = 15.0

# Refusals that may not be final: the request may still arrive through a slower watcher, and a
# URI may answer on a later try. Their reasons start with these.
REQUEST_NOT_SEEN = "request not seen"
DATA_NOT_AVAILABLE = ("input not available", "output not available")

Fetch = Callable[[str, int], Awaitable[bytes]]  # (uri, max_bytes) -> content, raises FetchError


class AttestationError(TesseraError):
    """A TASK_RESULT envelope from which no PROOF_ATTESTATION can be derived."""


class FetchError(TesseraError):
    """Task data behind a URI could not be fetched within its bounds."""


class ResultCheck(NamedTuple):
    ok: bool
    method: AttestationMethod
    reason: str


_METHODS = {
    ProofKind.NONE: AttestationMethod.SIGNATURE_ONLY,
    ProofKind.REEXECUTION: AttestationMethod.REEXECUTION,
    ProofKind.TEE_QUOTE: AttestationMethod.PLUGGABLE_VERIFIER,
    ProofKind.ZK_PROOF: AttestationMethod.PLUGGABLE_VERIFIER,
}


def method_for(proof_kind: ProofKind | int) -> AttestationMethod:
    """The attestation method a proof kind maps to (0→1, 1→2, 2/3→3): fixed by the result itself, so
    it never depends on what one attester happens to have installed."""
    try:
        return _METHODS[ProofKind(proof_kind)]
    except ValueError:
        raise AttestationError(f"proof kind {proof_kind} is unknown; expected 0 to 3") from None


def derive_attestation(result_envelope: Envelope, block_time: int, method: AttestationMethod | int) -> Envelope:
    """The PROOF_ATTESTATION envelope for a final TASK_RESULT envelope.

    `block_time` is the unix time of the block/slot that carried the result (checked_at)."""
    if result_envelope.kind != MessageKind.TASK_RESULT:
        raise AttestationError(
            f"only TASK_RESULT envelopes (kind 2) get an attestation; this one is kind {result_envelope.kind}")
    try:
        result = TaskResult.decode(result_envelope.payload)
        payload = ProofAttestation.for_result(result, result_envelope.message_id, AttestationMethod(method),
                                              int(block_time))
    except (TaskPayloadError, ValueError) as exc:
        raise AttestationError(f"cannot derive an attestation for 0x{result_envelope.message_id.hex()}: {exc}") from None
    return Envelope(
        kind=MessageKind.PROOF_ATTESTATION,
        nonce=ATTESTATION_NONCE,
        src_domain=COMMITTEE_DOMAIN,
        src_sender=COMMITTEE_SENDER,
        dst_domain=result_envelope.dst_domain,
        dst_receiver=result_envelope.dst_receiver,
        payload=payload.encode(),
    )


def attestation_for(result_envelope: Envelope, block_time: int) -> Envelope:
    """derive_attestation with the method taken from the result's proof kind (what relayers use)."""
    try:
        result = TaskResult.decode(result_envelope.payload)
    except TaskPayloadError as exc:
        raise AttestationError(f"TASK_RESULT 0x{result_envelope.message_id.hex()} does not decode: {exc}") from None
    return derive_attestation(result_envelope, block_time, method_for(result.proof_kind))


async def http_fetch(uri: str, max_bytes: int, timeout: float = FETCH_TIMEOUT_S) -> bytes:
    """GET an http(s) URI, reading at most max_bytes; other schemes need a gateway we do not have."""
    if not uri.startswith(("http://", "https://")):
        raise FetchError(f"cannot fetch {uri[:60]!r}: attesters fetch only http(s) URIs; publish the data over https")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(uri) as resp:
                if resp.status != 200:
                    raise FetchError(f"GET {uri[:80]} answered HTTP {resp.status}")
                too_big = FetchError(f"{uri[:80]} holds more than {max_bytes} bytes; the limit for task data is {max_bytes}")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise too_big
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > max_bytes:  # a lying or missing Content-Length: stop reading
                        raise too_big
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise FetchError(f"GET {uri[:80]} failed: {type(exc).__name__} {exc}".rstrip()) from None
    return bytes(body)


async def _fetch_checked(fetch: Fetch, what: str, uri: str, expected_hash: bytes, max_bytes: int) -> bytes:
    try:
        data = await fetch(uri, max_bytes)
    except FetchError as exc:
        raise _Refusal(f"{what} not available: {exc}") from None
    if keccak256(data) != expected_hash:
        raise _Refusal(f"{what} fetched from {uri[:80]} does not hash to the {what}_hash in the message")
    return data


class _Refusal(Exception):
    pass


def _refuse(method: AttestationMethod, reason: str) -> ResultCheck:
    return ResultCheck(False, method, reason)


async def check_result(
    request_env: Envelope | None,
    result_env: Envelope,
    executors: ExecutorRegistry,
    verifiers: ProofVerifierRegistry,
    fetch: Fetch = http_fetch,
    *,
    max_input_bytes: int = MAX_INPUT_BYTES,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> ResultCheck:
    """Decide whether the committee may attest `result_env` (a final TASK_RESULT) answering
    `request_env` (the TASK_REQUEST it names, None if this attester never saw it).

    Checks, in order: the result decodes; the request was seen; the result travels from the board
    the request was sent to, back to the requester, for the same executor; input and output are
    available (inline, or fetched and hash-checked); then the proof verifier for the proof kind,
    which checks the worker's signature and the output hash first. A deterministic executor
    installed here is re-executed whatever the proof kind says."""
    try:
        result = TaskResult.decode(result_env.payload)
    except TaskPayloadError as exc:
        return _refuse(AttestationMethod.SIGNATURE_ONLY, f"result payload does not decode: {exc}")
    method = method_for(result.proof_kind)
    if request_env is None:
        return _refuse(method, f"{REQUEST_NOT_SEEN}: no final TASK_REQUEST 0x{result.request_id.hex()} observed")
    if request_env.message_id != result.request_id:
        return _refuse(method, "the request given is not the one the result names")
    if request_env.kind != MessageKind.TASK_REQUEST:
        return _refuse(method, f"message 0x{result.request_id.hex()} is kind {request_env.kind}, not a TASK_REQUEST")
    try:
        request = TaskRequest.decode(request_env.payload)
    except TaskPayloadError as exc:
        return _refuse(method, f"request payload does not decode: {exc}")
    if (result_env.src_domain, result_env.src_sender) != (request_env.dst_domain, request_env.dst_receiver):
        return _refuse(method, (
            f"wrong source board: the result comes from domain {result_env.src_domain} sender "
            f"0x{result_env.src_sender.hex()}, the request went to domain {request_env.dst_domain} receiver "
            f"0x{request_env.dst_receiver.hex()}"))
    if (result_env.dst_domain, result_env.dst_receiver) != (request_env.src_domain, request_env.src_sender):
        return _refuse(method, (
            f"wrong destination: the result goes to domain {result_env.dst_domain} receiver "
            f"0x{result_env.dst_receiver.hex()}, the requester is domain {request_env.src_domain} sender "
            f"0x{request_env.src_sender.hex()}"))
    if result.executor != request.executor:
        return _refuse(method, f"executor mismatch: the request asked for {request.executor!r}, "
                               f"the result claims {result.executor!r}")
    try:
        if request.input is not None:
            input = request.input
        else:
            assert request.input_uri is not None and request.input_hash is not None
            input = await _fetch_checked(fetch, "input", request.input_uri, request.input_hash, max_input_bytes)
        if result.output is not None:
            output = result.output
        else:
            assert result.output_uri is not None
            output = await _fetch_checked(fetch, "output", result.output_uri, result.output_hash, max_output_bytes)
    except _Refusal as exc:
        return _refuse(method, str(exc))
    # Re-execution may take seconds (embeddings): keep it off the event loop.
    outcome, _ = await asyncio.to_thread(verifiers.check, result, input=input, output=output)
    if not outcome.ok:
        return _refuse(method, outcome.reason or "the proof verifier refused the result")
    if result.proof_kind is ProofKind.NONE:
        refusal = await asyncio.to_thread(_reexecute_if_deterministic, executors, result.executor, input, output)
        if refusal:
            return _refuse(method, refusal)
    return ResultCheck(True, method, outcome.reason)


def _reexecute_if_deterministic(executors: ExecutorRegistry, executor_id: str, input: bytes, output: bytes) -> str:
    try:
        executor = executors.get(executor_id)
    except ExecutorError:
        return ""  # not installed here: proof kind 0 asks for the signature only
    if not getattr(executor, "deterministic", False):
        return ""
    verdict = executor.verify(input, output)
    return "" if verdict.ok else f"output mismatch on re-execution: {verdict.reason}"

