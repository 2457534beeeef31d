"""The SDK side of AI tasks (task protocol v2): `TesseraClient.request_task(...)` returns a `TaskHandleV2`.

    handle = await client.request_task(src="evm", dst="solana", executor="sentiment",
                                       input="What a lovely day", max_fee=10**15)
    async for event in handle.events():      # requested, request_delivered, claimed, result_submitted, ...
        print(event.stage, event.elapsed_s)
    result = await handle.result(timeout=120)  # output + the checked verdict

`result()` returns only once the requester's board recorded the committee's valid verdict (and
paid the claimant's price), and after the SDK checked, off-chain, everything the output rests on:
the TASK_RESULT v2 and verdict envelopes hash to the ids the board recorded, the verdict matches
the result (request, output hash, claimant, payout, price), the worker's Ed25519 signature, the
output bytes against the output hash, and the committee's threshold signature over the verdict
(combined from the attesters' partials). The envelopes are fetched from the relayer's API and the
verdict id from an attester, neither of which is trusted: every byte is checked against the ids on
chain and against the committee key. Task protocol v1 requests are no longer sent (v1 is retired).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from relay.envelope import Envelope
from relay.errors import TesseraError
from relay.log import get_logger
from relay.protocol import MessageKind
from relay.interfaces import RequesterBoardV2, ServeState, ServingBoardV2, TaskState, TaskStatusV2
from relay.tasks.executors import ExecutorRegistry
from relay.envelope import keccak256
from relay.tasks.attestation import AttestationError, verdict_envelopes
from relay.tasks.payloads import (
    BPS,
    MAX_INLINE_INPUT_LEN_V2,
    AttestationMethod,
    ProofVerdict,
    TaskPayloadError,
    TaskRequestV2,
    TaskResultV2,
)

if TYPE_CHECKING:
    from relay.sdk import TesseraClient

_log = get_logger("sdk.tasks")

DEFAULT_DEADLINE_S = 300
# After this long with no claim on the destination, the handle says so (a `no_worker`
# event, NoWorkerError from result()) instead of waiting silently for the deadline.
DEFAULT_NO_WORKER_AFTER_S = 90.0


class TaskError(TesseraError):
    """Base class of the SDK's task errors."""


class TaskRequestError(TaskError, ValueError):
    """The request is malformed: nothing was sent."""


class TaskTimeoutError(TaskError, TimeoutError):
    pass


class TaskExpiredError(TaskError):
    """The deadline passed without an attested result: the escrow can be reclaimed."""


class TaskRefundedError(TaskError):
    pass


class TaskVerificationError(TaskError):
    """Something the result rests on does not check out: do not use the output."""


class NoWorkerError(TaskError):
    """No worker answered the task within `no_worker_after_s` (the message names the executor, the
    chain, and what to start). The task stays open until its deadline: a worker may still answer."""


@dataclass(frozen=True, slots=True)
class TaskEvent:
    # requested | request_delivered | claimed | claim_expired | result_submitted | result_refused |
    # result_delivered | completed | expired | refunded (TaskHandleV2 says which repeat); also no_worker
    # (once, not final: detail["reason"] says what is missing) when no worker claimed in time
    stage: str
    elapsed_s: float  # since request_task returned the request transaction
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VerifiedResult:
    request_id: bytes
    output: bytes
    result: TaskResultV2
    result_envelope: Envelope
    attestation: ProofVerdict  # the committee's verdict (a PROOF_ATTESTATION v2)
    attestation_envelope: Envelope
    epoch: int
    signature: bytes  # the committee's combined signature over the verdict envelope
    status: TaskStatusV2

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    @property
    def method(self) -> AttestationMethod:
        return self.attestation.method


@functools.cache
def _known_executors() -> frozenset[str]:
    registry = ExecutorRegistry.load({})
    return frozenset(registry.installed) | frozenset(registry.unavailable)


def _check_executor(executor: str, allow_unknown: bool) -> None:
    if allow_unknown:
        return
    known = _known_executors()
    if executor not in known:
        raise TaskRequestError(
            f"unknown executor {executor!r}; known: {', '.join(sorted(known))}. Pass allow_unknown_executor=True "
            "for a plugin that only the workers have installed")


# --- task protocol v2 ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuctionTerms:
    """How workers compete for a v2 task (docs/TASKS.md "Task protocol v2"): the price rises from
    `start_bps`/10000 of max_fee to max_fee over `window_s` seconds of the serving chain's clock; the
    first worker to claim at the current price posts `bond` (serving chain's smallest unit) and has
    `claim_window_s` to answer. `refund_to` (32 bytes, an account on the serving chain) receives a
    forfeited bond; None = the requester's own account there (the SDK's sender on that chain)."""

    window_s: int = 1
    start_bps: int = 5000
    claim_window_s: int = 60
    bond: int = 0
    refund_to: bytes | None = None


def build_request_v2(executor: str, input: bytes | str | None, max_fee: int, deadline: int, terms: AuctionTerms,
                     refund_to: bytes, input_uri: str | None = None, input_hash: bytes | None = None,
                     allow_unknown_executor: bool = False) -> TaskRequestV2:
    """Validates a TASK_REQUEST v2; every problem raises TaskRequestError saying what to do."""
    if isinstance(input, str):
        input = input.encode("utf-8")
    if not isinstance(max_fee, int) or max_fee < 0:
        raise TaskRequestError(f"max_fee must be a non-negative integer (smallest unit of the source chain's token), got {max_fee!r}")
    if deadline <= time.time():
        raise TaskRequestError(f"deadline {deadline} is not in the future; pass a unix time later than now")
    if not 0 <= terms.start_bps <= BPS:
        raise TaskRequestError(f"auction start_bps {terms.start_bps} must be 0..{BPS} (basis points of max_fee)")
    if terms.claim_window_s < 1:
        raise TaskRequestError("auction claim_window_s must be at least 1 second: a claimant needs time to answer")
    common = dict(max_fee=max_fee, deadline=deadline, auction_window=terms.window_s, start_bps=terms.start_bps,
                  claim_window=terms.claim_window_s, bond=terms.bond, refund_to=refund_to)
    try:
        if input_uri is not None:
            if input_hash is None:
                if input is None:
                    raise TaskRequestError("input by reference needs input_hash (keccak256 of the content) or the content itself")
                input_hash = keccak256(input)
            request = TaskRequestV2(executor, input_hash=input_hash, input_uri=input_uri, **common)  # type: ignore[arg-type]
        else:
            if input is None:
                raise TaskRequestError("pass input (inline) or input_uri (+ input or input_hash)")
            if len(input) > MAX_INLINE_INPUT_LEN_V2:
                raise TaskRequestError(
                    f"input is {len(input)} bytes; inline input is limited to {MAX_INLINE_INPUT_LEN_V2} bytes. Publish "
                    "it and pass input_uri= (https://, ipfs://, ar://) with the content or its keccak256 as input_hash=")
            request = TaskRequestV2(executor, input=input, **common)  # type: ignore[arg-type]
        request.encode()
    except TaskPayloadError as exc:
        raise TaskRequestError(str(exc)) from None
    _check_executor(executor, allow_unknown_executor)
    return request


class TaskHandleV2:
    """A v2 task: follows the serving board too (claims, results waiting for their verdict) and
    verifies the committee's v2 verdict.

    Events: requested, request_delivered, claimed (worker account, price, claim deadline; again after
    a claim expired or a result was refused), claim_expired, result_submitted, result_refused (the
    committee refused it: the claimant's bond is forfeited and the task re-opened), result_delivered,
    then completed (price paid, refund to the requester), expired (nothing can be paid any more:
    reclaim after `refundable_after`) or refunded; no_worker (once, not final) when no claim came in time."""

    def __init__(self, client: "TesseraClient", src: str, dst: str, request: TaskRequestV2, envelope: Envelope,
                 tx: str, requester: RequesterBoardV2, serving: ServingBoardV2,
                 no_worker_after_s: float | None = DEFAULT_NO_WORKER_AFTER_S) -> None:
        self._client = client
        self.src, self.dst = src, dst
        self.request = request
        self.envelope = envelope
        self.tx = tx
        self._requester = requester
        self._serving = serving
        self._started = time.monotonic()
        self.timeline: dict[str, float] = {"requested": 0.0}
        self.no_worker_after_s = no_worker_after_s  # None: never say so, wait for the deadline
        self.result_ids: list[bytes] = []  # every result the serving board sent for this task, in order

    @property
    def request_id(self) -> bytes:
        return self.envelope.message_id

    @property
    def id_hex(self) -> str:
        return "0x" + self.request_id.hex()

    def _event(self, stage: str, **detail) -> TaskEvent:
        elapsed = self.timeline.setdefault(stage, time.monotonic() - self._started)
        return TaskEvent(stage, elapsed, detail)

    async def status(self) -> TaskStatusV2:
        return await self._requester.task_status(self.request_id)

    def _event_again(self, stage: str, **detail) -> TaskEvent:
        """Stages that can happen more than once (claims, refusals): a new event each time."""
        return TaskEvent(stage, time.monotonic() - self._started, detail)

    async def events(self, poll: float = 0.25, timeout: float | None = None) -> AsyncIterator[TaskEvent]:
        yield self._event("requested", tx=self.tx)
        destination = self._client._chain(self.dst)
        seen: set[str] = {"requested"}
        claim: tuple[bytes, int] | None = None  # (claimant, claim deadline) of the claim last reported
        pending: bytes | None = None  # the result waiting for its verdict
        limit = None if timeout is None else time.monotonic() + timeout
        while True:
            if "request_delivered" not in seen and await destination.is_delivered(self.request_id):
                seen.add("request_delivered")
                yield self._event("request_delivered")
            serving = await self._serving.claim_status(self.request_id)
            if serving.state is not ServeState.NONE and "request_delivered" not in seen:
                seen.add("request_delivered")
                yield self._event("request_delivered")
            if pending is not None and (serving.state in (ServeState.OPEN, ServeState.CLAIMED)
                                        or (serving.state is ServeState.ANSWERED and serving.result_id != pending)):
                # The result we saw waiting is gone and the task open again: the committee refused it.
                yield self._event_again("result_refused", result_id="0x" + pending.hex())
                pending = None
                claim = None  # that claim ended with the refusal, not by expiring
            if serving.state in (ServeState.CLAIMED, ServeState.ANSWERED) and serving.claimant is not None:
                current = (serving.claimant, serving.claim_deadline or 0)
                if current != claim:
                    # Another claim than the one reported, with no result of the old one seen (a
                    # refused result resets `claim`): the old claim expired, even when the new one
                    # was made, or already answered, between two polls.
                    if claim is not None and pending is None:
                        yield self._event_again("claim_expired", worker="0x" + claim[0].hex())
                    claim = current
                    seen.add("claimed")
                    yield self._event_again("claimed", worker="0x" + serving.claimant.hex(), price=serving.price,
                                            claim_deadline=serving.claim_deadline)
            elif serving.state is ServeState.OPEN and claim is not None and pending is None:
                yield self._event_again("claim_expired", worker="0x" + claim[0].hex())
                claim = None
            if serving.state is ServeState.ANSWERED and serving.result_id and serving.result_id != pending:
                pending = serving.result_id
                self.result_ids.append(pending)
                seen.add("result_submitted")
                yield self._event_again("result_submitted", result_id="0x" + pending.hex())
            if pending is not None and "result_delivered" not in seen and await self._requester.result_recorded(pending):
                seen.add("result_delivered")
                yield self._event("result_delivered", result_id="0x" + pending.hex())
            status = await self._requester.task_status(self.request_id)
            if status.state == TaskState.COMPLETED:
                if status.result_id is not None and status.result_id not in self.result_ids:
                    self.result_ids.append(status.result_id)
                yield self._event("completed", payout="0x" + (status.payout or b"").hex(), price=status.price,
                                  refund=status.refund, result_id="0x" + (status.result_id or b"").hex())
                return
            if status.state == TaskState.REFUNDED:
                yield self._event("refunded", refund=status.refund)
                return
            # Past the deadline nothing more can be paid unless a result submitted in time waits for
            # its verdict (ANSWERED, or CLOSED by a valid verdict that has not reached this board yet).
            if (status.state == TaskState.OPEN and time.time() > status.deadline + 2
                    and (serving.state in (ServeState.NONE, ServeState.OPEN)
                         or (serving.state is ServeState.CLOSED and pending is None))):
                yield self._event("expired", deadline=status.deadline, refundable_after=status.refundable_after)
                return
            if ("claimed" not in seen and "no_worker" not in seen and self.no_worker_after_s is not None
                    and time.monotonic() - self._started > self.no_worker_after_s):
                seen.add("no_worker")
                yield self._no_worker_event("request_delivered" in seen)
            if limit is not None and time.monotonic() > limit:
                raise TaskTimeoutError(f"task {self.id_hex} did not finish within {timeout:.0f}s (stages: {sorted(seen)})")
            await asyncio.sleep(poll)

    async def verify(self) -> VerifiedResult:
        """The off-chain checks of the module docstring: the TASK_RESULT v2 (worker signature over its
        claim, request, output and its hash), the committee's verdict on it (valid, every field the
        result fixes, addressed to this requester's board, signed by the committee), and what the
        board paid (payout, price)."""
        status = await self._requester.task_status(self.request_id)
        if status.state != TaskState.COMPLETED:
            raise TaskVerificationError(f"task {self.id_hex} is {status.state.name}, not COMPLETED")
        candidates = [status.result_id] if status.result_id is not None else list(reversed(self.result_ids))
        if not candidates:
            serving = await self._serving.claim_status(self.request_id)
            candidates = [serving.result_id] if serving.result_id else []
        if not candidates:
            raise TaskVerificationError(f"task {self.id_hex} is COMPLETED but no result id is known: the board did not "
                                        "say which result it paid")
        problems = []
        for result_id in candidates:
            try:
                return await self._verify_result(status, result_id)
            except TaskVerificationError as exc:
                problems.append(f"0x{result_id.hex()}: {exc}")
        raise TaskVerificationError("; ".join(problems))

    async def _verify_result(self, status: TaskStatusV2, result_id: bytes) -> VerifiedResult:
        result_env = await self._fetch_envelope(result_id)
        if result_env.kind != MessageKind.TASK_RESULT:
            raise TaskVerificationError("the result id is not a TASK_RESULT envelope")
        try:
            result = TaskResultV2.decode(result_env.payload)
            result.verify_signature()
        except TaskPayloadError as exc:
            raise TaskVerificationError(f"the TASK_RESULT v2 does not check out: {exc}") from None
        if result.request_id != self.request_id or result.executor != self.request.executor:
            raise TaskVerificationError("the TASK_RESULT answers another request or executor")
        if (result_env.dst_domain, result_env.dst_receiver) != (self.envelope.src_domain, self.envelope.src_sender) or (
                (result_env.src_domain, result_env.src_sender) != (self.envelope.dst_domain, self.envelope.dst_receiver)):
            raise TaskVerificationError("the TASK_RESULT does not come from the board the request went to")
        if status.payout is not None and status.payout != result.payout:
            raise TaskVerificationError("the board paid another payout than the result names")
        if status.price is not None and status.price != result.price:
            raise TaskVerificationError(f"the board paid {status.price}, the result's claim price is {result.price}")
        output = result.output if result.output is not None else await self._fetch_uri(result.output_uri or "")
        if keccak256(output) != result.output_hash:
            raise TaskVerificationError("the output does not hash to the result's output_hash")
        verdict_id = await self._attestation_id(result_id)
        verdict_env = await self._fetch_envelope(verdict_id)
        try:
            verdict = ProofVerdict.decode(verdict_env.payload)
            expected = verdict_envelopes(result_env, verdict).requester
        except (TaskPayloadError, AttestationError) as exc:
            raise TaskVerificationError(f"the verdict does not match the result: {exc}") from None
        if expected.message_id != verdict_env.message_id:
            raise TaskVerificationError("the verdict envelope is not the committee's envelope to this requester's board")
        if not verdict.valid:
            raise TaskVerificationError(f"the committee refused this result ({verdict.reason.name.lower()})")
        if verdict.submitted_at > status.deadline:
            raise TaskVerificationError(f"the result was submitted at {verdict.submitted_at}, after the deadline")
        epoch, signature = await self._client.committee_signature(verdict_env)
        return VerifiedResult(self.request_id, output, result, result_env, verdict, verdict_env, epoch, signature,
                              status)

    def _no_worker_event(self, delivered: bool) -> TaskEvent:
        executor, chain, waited = self.request.executor, self.dst, self.no_worker_after_s
        if delivered:
            reason = (f"no worker on chain {chain!r} has answered task {self.id_hex} (executor {executor!r}) within "
                      f"{waited:.0f}s: is one running with {executor!r} among its [worker] executors? "
                      f"(`relay worker --chain {chain}`; `relay up` starts one per chain)")
        else:
            reason = (f"task {self.id_hex} (executor {executor!r}) has not reached chain {chain!r} within {waited:.0f}s, "
                      f"so no worker there could answer it: are the relayer and the attesters running? (`relay run`, "
                      f"`relay attester --index N`; `relay up` starts them; `relay status` shows the message)")
        _log.warning("no worker has answered", task=self.id_hex, executor=executor, chain=chain,
                     request_delivered=delivered, after_s=waited)
        return self._event("no_worker", executor=executor, chain=chain, request_delivered=delivered, reason=reason)

    async def result(self, timeout: float = 120.0) -> VerifiedResult:
        """The verified result; raises NoWorkerError once `no_worker_after_s` passed with no claim,
        TaskExpiredError after the deadline, TaskTimeoutError after `timeout`."""
        last = None
        try:
            async with asyncio.timeout(timeout):
                async for event in self.events():
                    last = event
                    if event.stage == "no_worker":
                        break
        except TimeoutError:
            raise TaskTimeoutError(
                f"task {self.id_hex} has no attested result after {timeout:.0f}s (last stage: "
                f"{last.stage if last else 'none'}); `relay status` shows the messages, handle.events() the stages") from None
        assert last is not None
        if last.stage == "no_worker":
            raise NoWorkerError(last.detail["reason"])
        if last.stage == "expired":
            raise TaskExpiredError(f"task {self.id_hex} passed its deadline with no result; call handle.reclaim()")
        if last.stage == "refunded":
            raise TaskRefundedError(f"task {self.id_hex} was refunded")
        return await self.verify()

    async def reclaim(self) -> str:
        return await self._requester.reclaim(self.request_id)

    async def _fetch_envelope(self, message_id: bytes) -> Envelope:
        url = f"{self._client.relayer_api()}/v1/messages/0x{message_id.hex()}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(url) as response:
                if response.status != 200:
                    raise TaskVerificationError(f"the relayer does not know message 0x{message_id.hex()} ({url}: "
                                                f"HTTP {response.status})")
                body = await response.json()
        envelope = Envelope.decode(bytes.fromhex(body["envelope"].removeprefix("0x")))
        if envelope.message_id != message_id:
            raise TaskVerificationError(f"the relayer returned an envelope that does not hash to 0x{message_id.hex()}")
        return envelope

    async def _attestation_id(self, result_id: bytes) -> bytes:
        reasons = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            for member in self._client.committee.members:
                url = f"{member.endpoint}/v1/task-results/0x{result_id.hex()}"
                try:
                    async with session.get(url) as response:
                        body = await response.json()
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    reasons.append(f"member {member.index}: {exc or type(exc).__name__}")
                    continue
                if body.get("status") == "attested" and body.get("attestation_id"):
                    return bytes.fromhex(body["attestation_id"].removeprefix("0x"))
                reasons.append(f"member {member.index}: {body.get('status')} {body.get('reason', '')}".strip())
        raise TaskVerificationError(f"no attester reports an attestation for result 0x{result_id.hex()}: {'; '.join(reasons)}")

    async def _fetch_uri(self, uri: str) -> bytes:
        if not uri.startswith(("http://", "https://")):
            raise TaskVerificationError(f"output is behind {uri!r}; fetch it yourself and check it against output_hash")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(uri) as response:
                if response.status != 200:
                    raise TaskVerificationError(f"output URI {uri} answered HTTP {response.status}")
                return await response.content.read(1 << 20)


async def request_task_v2(client: "TesseraClient", *, src: str, dst: str, executor: str,
                          input: bytes | str | None = None, max_fee: int, deadline: int | None = None,
                          input_uri: str | None = None, input_hash: bytes | None = None,
                          allow_unknown_executor: bool = False, auction: AuctionTerms | None = None,
                          no_worker_after_s: float | None = DEFAULT_NO_WORKER_AFTER_S,
                          signer: object = None) -> TaskHandleV2:
    if src == dst:
        raise TaskRequestError("src and dst are the same chain; a task goes to the workers of another chain")
    dst_chain = client._chain_config(dst)
    terms = auction or AuctionTerms()
    deadline = int(time.time()) + DEFAULT_DEADLINE_S if deadline is None else int(deadline)
    requester = client._task_board_v2(src, signer)
    serving = client._serving_board_v2(dst)
    # Forfeited bonds go to the requester's own account on the serving chain unless told otherwise.
    refund_to = terms.refund_to if terms.refund_to is not None else client._task_board_v2(dst).account
    if not isinstance(refund_to, bytes) or len(refund_to) != 32 or refund_to == bytes(32):
        raise TaskRequestError(f"refund_to must be a 32-byte account on {dst!r} (it receives forfeited bonds); "
                               f"the SDK has no sender account there: configure one or pass AuctionTerms(refund_to=...)")
    request = build_request_v2(executor, input, max_fee, deadline, terms, refund_to, input_uri, input_hash,
                               allow_unknown_executor)
    sent = await requester.request_task(dst_domain=dst_chain.domain, worker_board=serving.address, request=request)
    return TaskHandleV2(client, src, dst, request, sent.envelope, sent.tx, requester, serving, no_worker_after_s)
