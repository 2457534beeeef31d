"""PROOF_ATTESTATION envelopes: how every attester and every relayer derives the same bytes from a
TASK_RESULT, and what an attester checks before co-signing them (docs/PROTOCOL.md
"PROOF_ATTESTATION envelope", docs/TASKS.md "Proof attestations: what attesters check").

Task protocol v2 (docs/TASKS.md "Verdict"): a TASK_RESULT v2 gets a verdict, valid or refused with a
`RefusalReason`, signed as two envelopes (one to the requester's board, one to the serving board);
`check_result_v2` decides it, `verdict_envelopes` builds the pair, and an attester abstains (no
verdict at all) when the fault is not the worker's.

The attestation is derived, not agreed on: every field comes from the result envelope and the time
of the block that carried it, so attesters sign identical bytes without a round of messages and a
relayer knows which message id to collect partials for as soon as it sees the result.
"""

from __future__ import annotations

import asyncio
import enum
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
    ProofVerdict,
    RefusalReason,
    TaskPayloadError,
    TaskRequest,
    TaskRequestV2,
    TaskResult,
    TaskResultV2,
    WorkerSignatureError,
    task_payload_version,
)
from relay.tasks.proofs import ProofVerifierRegistry, RefuseUnknownProof

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


def result_version(result_envelope: Envelope) -> int:
    """1 or 2: which protocol a TASK_RESULT envelope speaks (its payload's version byte)."""
    return task_payload_version(MessageKind.TASK_RESULT, result_envelope.payload)


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



# --- task protocol v2: the committee's verdict ------------------------------------------------


class VerdictOutcome(str, enum.Enum):
    VALID = "valid"  # sign verdict 1
    REFUSED = "refused"  # sign verdict 2 with a RefusalReason: the result's own fault (costs the bond)
    ABSTAIN = "abstain"  # sign nothing: the fault is not the worker's, or not known yet


class VerdictCheck(NamedTuple):
    outcome: VerdictOutcome
    method: AttestationMethod
    refusal: RefusalReason | None  # set iff outcome is REFUSED
    reason: str  # for people: why (also for a valid verdict: what was checked)


class Verdicts(NamedTuple):
    """One verdict's two envelopes: the same payload, one to each board (docs/PROTOCOL.md,
    "PROOF_ATTESTATION v2"). Their message ids differ, so each board's gateway accepts its own once."""

    requester: Envelope  # dst = the result's destination: the requester's board (pay or not)
    serving: Envelope  # dst = the result's source: the serving board (bond back or forfeited)

    @property
    def verdict(self) -> ProofVerdict:
        return ProofVerdict.decode(self.requester.payload)


# A check answers with an address problem ("" when usable) for a payout on the requester's chain,
# by that chain's domain; the daemon builds it from the chain adapters (relay services never ask a
# chain's kind).
PayoutCheck = Callable[[int, bytes], str]


def nonzero_payout(domain: int, payout: bytes) -> str:
    """The chain-agnostic minimum: a zero payout pays nobody."""
    return "payout is zero" if payout == bytes(32) else ""


def derive_verdict(result_envelope: Envelope, block_time: int, refusal: RefusalReason | None = None) -> ProofVerdict:
    """The verdict payload on a final TASK_RESULT v2: every field but verdict and reason comes from
    the envelope (method from its proof kind, submitted_at = the block time that carried it)."""
    if result_envelope.kind != MessageKind.TASK_RESULT:
        raise AttestationError(
            f"only TASK_RESULT envelopes (kind 2) get a verdict; this one is kind {result_envelope.kind}")
    try:
        result = TaskResultV2.decode(result_envelope.payload)
        return ProofVerdict.for_result(result, result_envelope.message_id, method_for(result.proof_kind),
                                       int(block_time), refusal)
    except (TaskPayloadError, ValueError) as exc:
        raise AttestationError(f"cannot derive a verdict for 0x{result_envelope.message_id.hex()}: {exc}") from None


def verdict_envelopes(result_envelope: Envelope, verdict: ProofVerdict) -> Verdicts:
    """The verdict's two envelopes, after checking that it speaks for this result (every field the
    result fixes). Raises AttestationError for a verdict on another result."""
    try:
        result = TaskResultV2.decode(result_envelope.payload)
    except TaskPayloadError as exc:
        raise AttestationError(f"TASK_RESULT 0x{result_envelope.message_id.hex()} is not v2: {exc}") from None
    expected = (result.request_id, result_envelope.message_id, result.output_hash, result.worker, result.claimant,
                result.payout, result.price, method_for(result.proof_kind))
    got = (verdict.request_id, verdict.result_id, verdict.output_hash, verdict.worker, verdict.claimant,
           verdict.payout, verdict.price, verdict.method)
    if got != expected:
        raise AttestationError(f"the verdict does not speak for result 0x{result_envelope.message_id.hex()}")
    payload = verdict.encode()

    def to(domain: int, receiver: bytes) -> Envelope:
        return Envelope(kind=MessageKind.PROOF_ATTESTATION, nonce=ATTESTATION_NONCE, src_domain=COMMITTEE_DOMAIN,
                        src_sender=COMMITTEE_SENDER, dst_domain=domain, dst_receiver=receiver, payload=payload)

    return Verdicts(requester=to(result_envelope.dst_domain, result_envelope.dst_receiver),
                    serving=to(result_envelope.src_domain, result_envelope.src_sender))


def verdicts_for(result_envelope: Envelope, block_time: int, refusal: RefusalReason | None = None) -> Verdicts:
    return verdict_envelopes(result_envelope, derive_verdict(result_envelope, block_time, refusal))


def _abstain(method: AttestationMethod, reason: str) -> VerdictCheck:
    return VerdictCheck(VerdictOutcome.ABSTAIN, method, None, reason)


def _refused(method: AttestationMethod, refusal: RefusalReason, reason: str) -> VerdictCheck:
    return VerdictCheck(VerdictOutcome.REFUSED, method, refusal, reason)


async def check_result_v2(
    request_env: Envelope | None,
    result_env: Envelope,
    executors: ExecutorRegistry,
    verifiers: ProofVerifierRegistry,
    fetch: Fetch = http_fetch,
    *,
    payout_check: PayoutCheck = nonzero_payout,
    final_attempt: bool = True,
    max_input_bytes: int = MAX_INPUT_BYTES,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> VerdictCheck:
    """The committee's verdict on a final TASK_RESULT v2 (docs/TASKS.md, "Verdict").

    Abstains (signs nothing) when no verdict can be derived or the fault is not the worker's: the
    result does not decode, the request was not seen (yet) or is not a v2 request, the result does
    not come from the board the request went to or does not go back to the requester, its claim
    price is outside the request's auction, the requester's input is unreachable or does not hash
    to input_hash, or this attester cannot re-execute the executor. Refuses, with the reason, only
    what the result itself got wrong: payout unusable, wrong executor, worker signature, output
    unavailable (after the caller's retries: `final_attempt`), output mismatch on re-execution,
    proof invalid or of a kind no verifier here checks."""
    try:
        result = TaskResultV2.decode(result_env.payload)
    except TaskPayloadError as exc:
        return _abstain(AttestationMethod.SIGNATURE_ONLY, f"no verdict: the result payload does not decode: {exc}")
    method = method_for(result.proof_kind)
    if request_env is None:
        return _abstain(method, f"{REQUEST_NOT_SEEN}: no final TASK_REQUEST 0x{result.request_id.hex()} observed")
    if request_env.message_id != result.request_id or request_env.kind != MessageKind.TASK_REQUEST:
        return _abstain(method, "no verdict: the request given is not the TASK_REQUEST the result names")
    try:
        if task_payload_version(MessageKind.TASK_REQUEST, request_env.payload) != 2:
            return _abstain(method, "no verdict: a v2 result must answer a v2 request; this request is v1")
        request = TaskRequestV2.decode(request_env.payload)
    except TaskPayloadError as exc:
        return _abstain(method, f"no verdict: the request payload does not decode: {exc}")
    if (result_env.src_domain, result_env.src_sender) != (request_env.dst_domain, request_env.dst_receiver):
        return _abstain(method, (
            f"no verdict: the result comes from domain {result_env.src_domain} sender 0x{result_env.src_sender.hex()}, "
            f"the request went to domain {request_env.dst_domain} board 0x{request_env.dst_receiver.hex()}"))
    if (result_env.dst_domain, result_env.dst_receiver) != (request_env.src_domain, request_env.src_sender):
        return _abstain(method, (
            f"no verdict: the result goes to domain {result_env.dst_domain} receiver "
            f"0x{result_env.dst_receiver.hex()}, the requester is domain {request_env.src_domain} board "
            f"0x{request_env.src_sender.hex()}"))
    # The claim as the result carries it: the serving board enforces it; what we sign must agree.
    floor = request.price_at(0, 0) if request.auction_window else request.max_fee
    if not floor <= result.price <= request.max_fee or result.claimant == bytes(32):
        return _abstain(method, (
            f"no verdict: the claim in the result (price {result.price}, claimant 0x{result.claimant.hex()}) is not "
            f"one the serving board accepts (price from {floor} to max_fee {request.max_fee}, a claimant account)"))
    problem = payout_check(result_env.dst_domain, result.payout)
    if problem:
        return _refused(method, RefusalReason.PAYOUT_UNUSABLE,
                        f"payout 0x{result.payout.hex()} is not usable on the requester's chain: {problem}")
    if result.executor != request.executor:
        return _refused(method, RefusalReason.WRONG_EXECUTOR,
                        f"executor mismatch: the request asked for {request.executor!r}, the result names "
                        f"{result.executor!r}")
    try:
        result.verify_signature()
    except WorkerSignatureError as exc:
        return _refused(method, RefusalReason.WORKER_SIGNATURE, str(exc))
    try:
        if request.input is not None:
            input = request.input
        else:
            assert request.input_uri is not None and request.input_hash is not None
            input = await _fetch_checked(fetch, "input", request.input_uri, request.input_hash, max_input_bytes)
    except _Refusal as exc:
        return _abstain(method, str(exc))  # the requester's input: not the worker's fault
    try:
        if result.output is not None:
            output = result.output
        else:
            assert result.output_uri is not None
            output = await _fetch_checked(fetch, "output", result.output_uri, result.output_hash, max_output_bytes)
    except _Refusal as exc:
        if final_attempt or "does not hash" in str(exc):
            return _refused(method, RefusalReason.OUTPUT_UNAVAILABLE, str(exc))
        return _abstain(method, str(exc))  # starts with "output not available": the caller retries
    verifier = verifiers.verifier_for(result.proof_kind)
    if isinstance(verifier, RefuseUnknownProof):
        outcome, _ = verifiers.check(result, input=input, output=output)  # type: ignore[arg-type]
        return _refused(method, RefusalReason.PROOF_UNSUPPORTED, outcome.reason)
    executor = None
    try:
        executor = executors.get(result.executor)
    except ExecutorError as exc:
        if result.proof_kind is ProofKind.REEXECUTION:
            return _abstain(method, f"no verdict: this attester cannot re-execute {result.executor!r}: {exc}")
    # Re-execution may take seconds (embeddings): keep it off the event loop.
    outcome, _ = await asyncio.to_thread(verifiers.check, result, input=input, output=output)  # type: ignore[arg-type]
    if not outcome.ok:
        why = outcome.reason or "the proof verifier refused the result"
        if result.proof_kind is ProofKind.REEXECUTION:
            return _refused(method, RefusalReason.OUTPUT_MISMATCH, f"output mismatch on re-execution: {why}")
        return _refused(method, RefusalReason.PROOF_INVALID, why)
    if result.proof_kind is ProofKind.NONE and executor is not None and getattr(executor, "deterministic", False):
        verdict = await asyncio.to_thread(executor.verify, input, output)
        if not verdict.ok:
            return _refused(method, RefusalReason.OUTPUT_MISMATCH, f"output mismatch on re-execution: {verdict.reason}")
    return VerdictCheck(VerdictOutcome.VALID, method, None, outcome.reason)


class VerdictReport(NamedTuple):
    """What the committee's members say about one v2 result (GET /v1/task-results/{id})."""

    agreed: list[bytes]  # verdict payloads signed by at least t members (one, as t > n/2)
    final_without: int  # members that abstained (no verdict from them)
    answers: int  # members that answered at all
    hopeless: bool = False  # so many abstained that no verdict can gather t signatures


class CommitteeVerdicts:
    """The relayer's view of the committee's verdicts: it asks every member which verdict it signed
    for a result. Only a payload that t members report is returned, so a minority of members cannot
    make the relayer carry a verdict the committee will not sign; the signature is still collected
    and checked like any other."""

    def __init__(self, endpoints: list[str], threshold: int, timeout: float = 3.0) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.threshold = threshold
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _ask(self, endpoint: str, result_id: bytes) -> dict | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(f"{endpoint}/v1/task-results/0x{result_id.hex()}") as resp:
                if resp.status != 200:
                    return None
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    async def report(self, result_id: bytes) -> VerdictReport:
        answers = await asyncio.gather(*(self._ask(e, result_id) for e in self.endpoints))
        counts: dict[bytes, int] = {}
        abstained = 0
        for body in answers:
            if body is None:
                continue
            if body.get("status") == "abstained" and not str(body.get("reason", "")).startswith(REQUEST_NOT_SEEN):
                abstained += 1  # (not seen yet is not final: the member checks again once it sees the request)
            raw = body.get("verdict_payload")
            if body.get("status") != "attested" or not isinstance(raw, str):
                continue
            try:
                payload = bytes.fromhex(raw.removeprefix("0x"))
            except ValueError:
                continue
            counts[payload] = counts.get(payload, 0) + 1
        agreed = [payload for payload, n in counts.items() if n >= self.threshold]
        return VerdictReport(agreed, abstained, sum(1 for body in answers if body is not None),
                             hopeless=abstained > len(self.endpoints) - self.threshold)
