"""The task worker: serves TASK_REQUEST v2s delivered to its chain's task board (docs/TASKS.md, "Worker").

For each delivered request it decides whether to serve it (executor served, its price, bond,
deadline, payout, input reachable), claims it at the auction price, runs the executor, signs the
TASK_RESULT v2 and sends it through the board. Every transition is committed to the WorkerStore
before the next step, so a killed worker resumes: `executed`/`submitted` never run the executor
again (the stored result is reused), a task killed while `running` is re-run (up to `max_runs` runs
in all), and a held claim is never claimed again. Task protocol v1 is retired: a delivered v1
TASK_REQUEST is ignored with a `task_ignored` log line (`retired_request_reason`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from attest.files import write_atomic
from relay.aio import within
from relay.backoff import Backoff
from relay.envelope import Envelope, EnvelopeError, keccak256
from relay.errors import ConfigError, TesseraError
from relay.lifecycle import keep_running
from relay.log import get_logger
from relay.protocol import MessageKind
from relay.tasks.board import (BondRefused, ClaimLost, ClaimNotHeld, ClaimRefused, RequestExpired,
                               ResultAlreadySubmitted)
from relay.interfaces import Claim, ClaimStatus, IncomingRequestV2, ServeState, ServingBoardV2, SettledCloser
from relay.tasks.executors import (
    ExecutorError,
    ExecutorRegistry,
    ExecutorTimeoutError,
    ExecutorUpstreamError,
)
from relay.tasks.payloads import (
    MAX_INLINE_OUTPUT_LEN_V2,
    PayloadTooLargeError,
    ProofKind,
    TaskPayloadError,
    TaskRequestV2,
    TaskResultV2,
    auction_price,
    task_payload_version,
)
from relay.tasks.worker_store import ClaimRecord, SettleRecord, TaskRecord, TaskStage, WorkerStore

log = get_logger("relay.worker")

OUTPUT_TOO_LARGE = "output does not fit inline; output hosting is not configured"
# Settling up: a task whose record stays unsettled this long after its end is left (by then anyone may
# close a settled Solana record: TASK_RETENTION_SECONDS, one day), and a task with nothing to do yet is
# looked at again after settle_interval_s * 2**tries, at most SETTLE_MAX_WAIT_S later.
SETTLE_GIVE_UP_S = 3 * 86_400.0
SETTLE_MAX_WAIT_S = 1_800.0


class WorkerError(TesseraError):
    """The worker cannot start or a key file is unusable."""


class _Skip(Exception):
    """Not served; nothing ran (or what ran cannot be sent). Final."""


class _Fail(Exception):
    """Tried and gave up. Final."""


class _Retry(Exception):
    """Transient trouble (input server, upstream): try again after a backoff, while time is left."""


class _Done(Exception):
    """The record was already moved to a final stage (e.g. answered by someone else before we ran)."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    executors: tuple[str, ...] = ("echo", "sentiment")
    concurrency: int = 4
    min_fee: int = 0
    min_time_left_s: float = 5.0
    input_fetch_timeout_s: float = 10.0
    max_input_bytes: int = 1024 * 1024
    output_url: str | None = None  # base URL of this worker's output host; None = inline outputs only
    # A task found `running` after a restart was killed mid-execution: it is run again only while it
    # has run fewer than this many times (2: one re-run), so a task that crashes the worker cannot
    # loop forever.
    max_runs: int = 2
    max_upstream_attempts: int = 3  # executor runs per task when the server behind it errors
    max_submit_attempts: int = 6
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=10.0))
    # Task protocol v2: the least this worker accepts per executor (an executor not listed: min_fee),
    # the largest bond it posts (None: any its account can fund), and how often it looks at a claim
    # held by another worker (it may expire or be refused, and the task re-open).
    prices: Mapping[str, int] = field(default_factory=dict)
    max_bond: int | None = None
    claim_poll_s: float = 0.5
    # How often the settle pass runs: bond release, credit withdrawal and (Solana) serve-account
    # closing for the tasks this worker claimed, once they ended.
    settle_interval_s: float = 60.0

    def price_for(self, executor: str) -> int:
        return self.prices.get(executor, self.min_fee)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Gauge("tessera_worker_tasks", "Tasks by stage", ["stage"], registry=self.registry)
        self.runs = Counter("tessera_worker_executor_runs", "Executor runs", ["executor"], registry=self.registry)
        self.outcomes = Counter("tessera_worker_outcomes", "Tasks reaching a final stage", ["stage"],
                                registry=self.registry)
        self.bonds_released = Counter("tessera_worker_bonds_released",
                                      "Bonds of our results with no verdict released by this worker",
                                      registry=self.registry)
        self.credits_withdrawn = Counter("tessera_worker_credits_withdrawn",
                                         "Withdrawals of credits the board held for this worker",
                                         registry=self.registry)
        self.accounts_closed = Counter("tessera_worker_accounts_closed",
                                       "Settled board records closed by this worker (rent back)",
                                       registry=self.registry)
        self.settle_errors = Counter("tessera_worker_settle_errors", "Settle steps that failed (retried later)",
                                     registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _short(request_id: bytes) -> str:
    return "0x" + request_id.hex()


# --- identity --------------------------------------------------------------------------------


def generate_identity(path: Path) -> Ed25519PrivateKey:
    """Write a new Ed25519 seed (hex, mode 0600) atomically; refuses to overwrite."""
    path = Path(path)
    if path.exists():
        raise WorkerError(f"{path} already exists; a worker identity is never overwritten (move it away first)")
    seed = os.urandom(32)
    try:
        write_atomic(path, seed.hex() + "\n", 0o600, exclusive=True)
    except FileExistsError:
        raise WorkerError(f"{path} already exists; a worker identity is never overwritten") from None
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_identity(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise WorkerError(f"worker key {path} does not exist; create it with `relay worker keygen --out {path}`") from None
    except OSError as exc:
        raise WorkerError(f"cannot read worker key {path}: {exc.strerror}") from None
    try:
        seed = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise WorkerError(f"worker key {path} must hold a 32-byte Ed25519 seed in hex (as `relay worker keygen` writes)")
    return Ed25519PrivateKey.from_private_bytes(seed)


# --- task protocol v2 ------------------------------------------------------------------------


def claim_time(request: TaskRequestV2, auction_start: int, price: int) -> int | None:
    """The first second (serving chain's clock) at which the auction price reaches `price`; None when
    it never does (price above max_fee)."""
    if price > request.max_fee:
        return None
    window = request.auction_window
    if window == 0 or auction_price(request.max_fee, request.start_bps, window, auction_start, auction_start) >= price:
        return auction_start
    start = request.max_fee * request.start_bps // 10_000
    t = auction_start + max(0, (price - start) * window // (request.max_fee - start))
    while auction_price(request.max_fee, request.start_bps, window, auction_start, t) < price:
        t += 1
    return t


RETIRED_V1 = "task protocol v1 is retired (docs/TASKS.md \"v1 retired\"): a v1 TASK_REQUEST is not served"


def retired_request_reason(envelope: Envelope) -> str | None:
    """Why a delivered envelope is not a request this worker serves at all, or None for a TASK_REQUEST
    v2 (which the serving decision then checks in full): a v1 request is ignored, never served."""
    if envelope.kind != MessageKind.TASK_REQUEST:
        return f"envelope kind {envelope.kind} is not a TASK_REQUEST"
    if task_payload_version(MessageKind.TASK_REQUEST, envelope.payload) != 2:
        return RETIRED_V1
    return None


class WorkerV2:
    """The task worker on a v2 board (docs/TASKS.md, "Worker"): for each delivered TASK_REQUEST v2 it
    decides whether to serve it at its own price, waits for the reverse-Dutch-auction price to reach
    that price, claims it with the bond, executes, and submits the TASK_RESULT v2 carrying its claim
    (claimant, payout, price) before the claim deadline.

    Stages: seen → claimed → running → executed → submitted → done; lost when another worker's claim
    or result won (normal, logged at info); bond_lost when our claim ran out without our result;
    skipped / failed (nothing ran, or gave up; with the reason). A restart never claims a task it holds (the stored claim is used; a
    task found `seen` is claimed through the board, which returns the claim we already hold without
    sending anything) and never submits after the claim deadline."""

    def __init__(
        self,
        board: ServingBoardV2,
        executors: ExecutorRegistry,
        identity: Ed25519PrivateKey,
        payouts: Mapping[int, bytes],
        store: WorkerStore,
        settings: WorkerSettings = WorkerSettings(),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self.executors = executors
        self.identity = identity
        self.payouts = dict(payouts)
        self.store = store
        self.settings = settings
        self.clock = clock
        self.metrics = WorkerMetrics()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._inflight: dict[bytes, asyncio.Task] = {}
        self._http: aiohttp.ClientSession | None = None
        for executor_id in settings.executors:
            # Fail at start, not on the first request: a served executor must be installed and buildable.
            try:
                executors.get(executor_id)
            except ExecutorError as exc:
                raise ConfigError(f"worker.executors lists {executor_id!r}, which cannot run here: {exc}") from None
        for domain, payout in self.payouts.items():
            if len(payout) != 32:
                raise ConfigError(f"payout for domain {domain} must be 32 bytes")
        self._clock_offset: float | None = None  # serving chain time - local time

    @property
    def cursor_name(self) -> str:
        # Keyed by the board's address too: a cursor of a previous deployment means nothing to a new one.
        return f"{self.board.name}:{self.board.domain}:{self.board.address.hex()}"

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Resume unfinished tasks, then watch the board until `stop` is set."""
        for record in await self.store.active():
            log.info("task_resumed", request=_short(record.request_id), stage=record.stage.value, runs=record.runs)
            self._spawn(record.request_id)
        watcher = asyncio.create_task(keep_running("watch task requests", self._watch, log))
        settler = asyncio.create_task(keep_running("settle claimed tasks", self._settle_loop, log))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({watcher, settler, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, settler, stopper, *self._inflight.values()):
                task.cancel()
            await asyncio.gather(watcher, settler, stopper, *self._inflight.values(), return_exceptions=True)
            if self._http is not None:
                await self._http.close()
                self._http = None


    async def _watch(self) -> None:
        cursor = await self.store.get_cursor(self.cursor_name)
        async for incoming in self.board.watch_requests(cursor):
            if await self.ingest(incoming):
                self._spawn(incoming.request_id)
            await self.store.set_cursor(self.cursor_name, incoming.cursor)
        raise WorkerError(f"the request watch on {self.board.name} ended; restarting it")

    def _spawn(self, request_id: bytes) -> None:
        if request_id in self._inflight:
            return
        task = asyncio.create_task(self._guarded(request_id))
        self._inflight[request_id] = task
        task.add_done_callback(lambda _t, rid=request_id: self._inflight.pop(rid, None))

    async def _guarded(self, request_id: bytes) -> None:
        async with self._slots:
            try:
                await self.process(request_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one task's bug never stops the others
                reason = f"internal error: {type(exc).__name__}: {exc}"
                log.exception("task_crashed", request=_short(request_id), reason=reason)
                await self.store.finish(request_id, TaskStage.FAILED, reason)

    async def ingest(self, incoming: IncomingRequestV2) -> bool:
        """Record a delivered request (idempotent); True when it is new. A TASK_REQUEST in task
        protocol v1 (retired, docs/TASKS.md "v1 retired") is ignored with a log line, not recorded."""
        reason = retired_request_reason(incoming.envelope)
        if reason is not None:
            log.warning("task_ignored", request=_short(incoming.request_id), src_domain=incoming.envelope.src_domain,
                        delivery_tx=incoming.delivery_tx, reason=reason)
            return False
        request = incoming.request
        new = await self.store.add(incoming.request_id, incoming.envelope.src_domain, request.executor,
                                   incoming.envelope.encode(), incoming.delivery_tx, incoming.position,
                                   request.deadline, now=self.clock())
        await self.store.add_v2(incoming.request_id, incoming.auction_start)
        if new:
            log.info("task_seen", request=_short(incoming.request_id), executor=request.executor,
                     src_domain=incoming.envelope.src_domain, max_fee=request.max_fee, bond=request.bond,
                     auction_start=incoming.auction_start, delivery_tx=incoming.delivery_tx)
        return new

    # --- the serving chain's clock ------------------------------------------------------------

    async def chain_now(self) -> float:
        """The serving chain's clock now (its latest block time, extrapolated by our clock between
        reads): auction prices and claim deadlines are on that clock."""
        try:
            chain = await self.board.chain_time()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._clock_offset is None:
                raise
            log.warning("chain_time_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            local = self.clock()
            # A block time lags the wall clock by up to a block: keep the largest offset seen lately.
            offset = chain - local
            self._clock_offset = offset if self._clock_offset is None else max(offset, self._clock_offset - 1.0)
        return self.clock() + (self._clock_offset or 0.0)

    # --- one task -----------------------------------------------------------------------------

    async def process(self, request_id: bytes) -> TaskRecord:
        record = await self.store.get(request_id)
        if record is None:
            raise WorkerError(f"request {_short(request_id)} is not in the worker store")
        claim = await self.store.claim_of(request_id)
        if claim is None:
            await self._finish(request_id, TaskStage.SKIPPED, "not a task protocol v2 request (no auction recorded)")
            return await self._final(request_id)
        try:
            if record.stage is TaskStage.SEEN:
                await self._claim(record, claim)
                record, claim = await self._reload(request_id)
            if record.stage in (TaskStage.CLAIMED, TaskStage.RUNNING):
                await self._execute_v2(record, claim)
                record, claim = await self._reload(request_id)
            if record.stage in (TaskStage.EXECUTED, TaskStage.SUBMITTED):
                await self._submit_v2(record, claim)
        except _Skip as exc:
            await self._finish(request_id, TaskStage.SKIPPED, str(exc))
        except _Fail as exc:
            await self._finish(request_id, TaskStage.FAILED, str(exc))
        except _Done:
            pass
        return await self._final(request_id)

    async def _final(self, request_id: bytes) -> TaskRecord:
        final = await self.store.get(request_id)
        assert final is not None
        return final

    async def _reload(self, request_id: bytes) -> tuple[TaskRecord, ClaimRecord]:
        record, claim = await self.store.get(request_id), await self.store.claim_of(request_id)
        assert record is not None and claim is not None
        return record, claim

    async def _lost(self, request_id: bytes, reason: str) -> None:
        await self._finish(request_id, TaskStage.LOST, reason)  # (logged at info: losing a race is normal)
        raise _Done

    async def _bond_lost(self, request_id: bytes, reason: str) -> None:
        await self._finish(request_id, TaskStage.BOND_LOST, reason)
        log.warning("bond_lost", request=_short(request_id), reason=reason)
        raise _Done

    def _check_v2(self, record: TaskRecord) -> tuple[Envelope, TaskRequestV2, bytes, int]:
        """The serving decision, made before anything is claimed. Raises _Skip with the reason."""
        envelope = Envelope.decode(record.envelope)
        try:
            request = TaskRequestV2.decode(envelope.payload)
        except (TaskPayloadError, EnvelopeError) as exc:
            raise _Skip(f"malformed TASK_REQUEST v2 payload: {exc}") from None
        if request.executor not in self.settings.executors:
            raise _Skip(f"executor {request.executor!r} is not served by this worker "
                        f"(serves {', '.join(self.settings.executors)})")
        payout = self.payouts.get(envelope.src_domain)
        if payout is None:
            raise _Skip(f"no payout address for the requester's domain {envelope.src_domain}; "
                        "add the chain under [worker.payout]")
        price = self.settings.price_for(request.executor)
        if request.max_fee < price:
            raise _Skip(f"max fee {request.max_fee} is below this worker's price {price} for {request.executor!r}")
        if self.settings.max_bond is not None and request.bond > self.settings.max_bond:
            raise _Skip(f"bond {request.bond} is above this worker's max_bond {self.settings.max_bond}")
        if request.input is None and not (request.input_uri or "").startswith(("http://", "https://")):
            scheme = (request.input_uri or "").split("://", 1)[0]
            raise _Skip(f"input URI scheme {scheme}:// is not fetched by this worker (only http:// and https://)")
        return envelope, request, payout, price

    async def _claim(self, record: TaskRecord, auction: ClaimRecord) -> None:
        rid = record.request_id
        _, request, payout, price = self._check_v2(record)
        at = claim_time(request, auction.auction_start, price)
        assert at is not None  # max_fee >= price was checked
        left = request.deadline - await self.chain_now()
        if left < self.settings.min_time_left_s:
            raise _Skip(f"deadline {request.deadline} leaves {max(left, 0):.1f}s, less than min_time_left_s "
                        f"{self.settings.min_time_left_s:g}")
        while True:
            now = await self.chain_now()
            # The claim must leave time to execute: its deadline is min(claim time + claim_window, deadline).
            claim_at = max(now, at)
            if min(claim_at + request.claim_window, request.deadline) - claim_at < self.settings.min_time_left_s:
                if claim_at > now:
                    raise _Skip(f"the auction reaches our price {price} at {at}, leaving less than min_time_left_s "
                                f"{self.settings.min_time_left_s:g} before the deadline {request.deadline}")
                await self._lost(rid, f"deadline {request.deadline} is too close to claim it "
                                      f"(min_time_left_s {self.settings.min_time_left_s:g})")
            if now < at:
                # Sleep until the auction price reaches ours (the claim then lands at that price or a bit more).
                await asyncio.sleep(min(at - now, 5.0))
                continue
            status = await self.board.claim_status(rid)
            if status.state is ServeState.NONE:
                raise _Fail("the board does not know this request (the delivery we saw is not in its state)")
            if status.state is ServeState.CLOSED:
                await self._lost(rid, "the task is closed on the board (served or expired)")
            if status.state is ServeState.ANSWERED and status.claimant != self.board.account:
                await self._wait_claim(rid, "another worker's result waits for its verdict")
                continue
            if (status.state is ServeState.CLAIMED and status.claimant != self.board.account
                    and (status.claim_deadline or 0) >= now):
                await self._wait_claim(rid, f"another worker holds the claim until {status.claim_deadline}")
                continue
            try:
                claim = await self.board.claim(rid, payout)
            except ClaimLost as exc:
                await self._wait_claim(rid, f"claim race lost: {exc.reason}")
                continue
            except RequestExpired:
                await self._lost(rid, "the deadline passed before we could claim it")
            except ClaimRefused as exc:
                raise _Skip(f"the board refuses our claim: {exc.reason}") from None
            break
        await self._record_claim(rid, claim)

    async def _wait_claim(self, rid: bytes, why: str) -> None:
        """Someone else holds the task: normal (the cheapest worker claims first). Look again later:
        its claim may expire or its result be refused, and the task re-open."""
        current = await self.store.get(rid)
        if current is not None and current.reason != why:
            log.info("task_claimed_by_another", request=_short(rid), reason=why)
            await self.store.note(rid, why)
        await asyncio.sleep(self.settings.claim_poll_s)

    async def _record_claim(self, rid: bytes, claim: Claim) -> None:
        await self.store.claimed(rid, claim.claimant, claim.payout, claim.price, claim.bond, claim.claim_deadline,
                                 claim.tx)
        log.info("task_claimed", request=_short(rid), price=claim.price, bond=claim.bond,
                 claim_deadline=claim.claim_deadline, tx=claim.tx)

    async def _claim_time_left(self, claim: ClaimRecord) -> float:
        assert claim.claim_deadline is not None
        return claim.claim_deadline - await self.chain_now()

    async def _execute_v2(self, record: TaskRecord, claim: ClaimRecord) -> None:
        rid = record.request_id
        assert claim.held and claim.claim_deadline is not None
        if record.stage is TaskStage.RUNNING:
            if record.runs >= self.settings.max_runs:
                raise _Fail(f"the executor was interrupted {record.runs} times (worker killed mid-execution); "
                            "not running it again")
            log.info("task_rerun", request=_short(rid), runs=record.runs, why="interrupted while running")
        _, request, _, _ = self._check_v2(record)
        if await self._claim_time_left(claim) <= 0:
            await self._bond_lost(rid, f"the claim deadline {claim.claim_deadline} passed before the executor ran")
        executor = self.executors.get(request.executor)
        # Local time by which the result must be on the board: the claim deadline on the chain's clock.
        local_deadline = self.clock() + await self._claim_time_left(claim)
        data = await self._with_retries(rid, int(local_deadline), lambda: self._input(request), "fetch input")
        upstream_attempts = 0
        while True:
            left = local_deadline - self.clock()
            if left <= 0:
                await self._bond_lost(rid, "the claim deadline passed before the executor finished")
            runs = await self.store.start_run(rid)
            self.metrics.runs.labels(executor=request.executor).inc()
            log.info("executor_started", request=_short(rid), executor=request.executor, run=runs,
                     time_left_s=round(left, 1))
            try:
                # relay.aio.within, not asyncio.wait_for: a cancellation (shutdown) in the loop turn the
                # executor returns in must stop the task, not be swallowed (then it would go on to submit).
                output = await within(executor.run(data, deadline=local_deadline), left)
                break
            except asyncio.TimeoutError:
                await self._bond_lost(rid, f"executor {request.executor!r} did not finish before the claim deadline")
            except ExecutorTimeoutError as exc:
                raise _Fail(f"executor timed out: {exc}") from None
            except ExecutorUpstreamError as exc:
                upstream_attempts += 1
                if upstream_attempts >= self.settings.max_upstream_attempts:
                    raise _Fail(f"executor upstream failed {upstream_attempts} times: {exc}") from None
                await self.store.note(rid, f"upstream error, retrying: {exc}")
                await self._sleep_before_retry(rid, int(local_deadline), upstream_attempts, str(exc))
            except ExecutorError as exc:
                raise _Fail(f"executor refused or failed: {exc}") from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise _Fail(f"executor {request.executor!r} raised {type(exc).__name__}: {exc}") from None
        if not isinstance(output, bytes):
            raise _Fail(f"executor {request.executor!r} returned {type(output).__name__}, not bytes")
        proof_kind = ProofKind.REEXECUTION if executor.deterministic else ProofKind.NONE
        assert claim.claimant is not None and claim.payout is not None and claim.price is not None
        fields = dict(request_id=rid, executor=request.executor, output=output, claimant=claim.claimant,
                      payout=claim.payout, price=claim.price, proof_kind=proof_kind)
        result = TaskResultV2.signed(self.identity, **fields)  # type: ignore[arg-type]
        try:
            encoded = result.encode()
        except PayloadTooLargeError:
            if self.settings.output_url is None:
                raise _Skip(f"{OUTPUT_TOO_LARGE} ({len(output)} output bytes; at most {MAX_INLINE_OUTPUT_LEN_V2} "
                            "travel inline; set [worker] listen and output_url)") from None
            uri = f"{self.settings.output_url}/v1/outputs/0x{keccak256(output).hex()}"
            try:
                result = TaskResultV2.signed(self.identity, output_uri=uri, **fields)  # type: ignore[arg-type]
                encoded = result.encode()
            except TaskPayloadError as exc:
                raise _Skip(f"output by URI cannot be sent: {exc}; shorten [worker] output_url") from None
        await self.store.executed(rid, output, result.output_hash, encoded)
        log.info("task_executed", request=_short(rid), executor=request.executor, output_bytes=len(output),
                 output_hash="0x" + result.output_hash.hex(), price=claim.price, output_uri=result.output_uri)

    async def _submit_v2(self, record: TaskRecord, claim: ClaimRecord) -> None:
        rid = record.request_id
        assert record.result is not None and claim.held
        attempts = 0
        while True:
            try:
                status = await self.board.claim_status(rid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts += 1
                await self._submit_backoff_v2(rid, claim, attempts, f"cannot read the board: {type(exc).__name__}: {exc}")
                continue
            ours = status.claimant == self.board.account
            if status.state in (ServeState.ANSWERED, ServeState.CLOSED) and ours and status.price == claim.price:
                current = await self.store.get(rid)
                assert current is not None  # our result landed (perhaps before a restart)
                await self._finish(rid, TaskStage.DONE, "" if current.submit_tx else
                                   "result is on the board (submitted before a restart)")
                return
            if not (status.state is ServeState.CLAIMED and ours):
                await self._bond_lost(rid, f"our claim is gone before our result landed (board state "
                                           f"{status.state.name.lower()})")
            if await self._claim_time_left(claim) <= 0:
                await self._bond_lost(rid, f"the claim deadline {claim.claim_deadline} passed before submission")
            await self.store.submitting(rid)
            try:
                tx = await self.board.submit_result(rid, record.result)
            except asyncio.CancelledError:
                raise
            except ResultAlreadySubmitted as exc:
                # Ours, sent before (the next read says so), or not: the board's state decides.
                attempts += 1
                await self._submit_backoff_v2(rid, claim, attempts, f"the board has a result already: {exc.reason}")
                continue
            except ClaimNotHeld as exc:
                await self._bond_lost(rid, f"the board refuses our result: {exc.reason}")
            except RequestExpired as exc:
                await self._bond_lost(rid, f"the board refuses our result: the deadline passed ({exc.reason})")
            except Exception as exc:
                attempts += 1
                await self._submit_backoff_v2(rid, claim, attempts, f"submission failed: {type(exc).__name__}: {exc}")
                continue
            await self.store.submitted(rid, tx)
            await self._finish(rid, TaskStage.DONE, "")
            log.info("result_submitted", request=_short(rid), tx=tx, price=claim.price)
            return

    async def _submit_backoff_v2(self, rid: bytes, claim: ClaimRecord, attempts: int, reason: str) -> None:
        if attempts >= self.settings.max_submit_attempts:
            raise _Fail(f"{reason} (gave up after {attempts} attempts)")
        await self.store.note(rid, reason)
        delay = self.settings.backoff.delay(attempts - 1)
        if await self._claim_time_left(claim) <= delay:
            await self._bond_lost(rid, f"{reason}; no time left before the claim deadline to retry")
        log.info("task_retry", request=_short(rid), in_s=round(delay, 2), reason=reason)
        await asyncio.sleep(delay)

    # --- settling up after claimed tasks ------------------------------------------------------

    async def _settle_loop(self) -> None:
        while True:
            await self.settle_pass()
            await asyncio.sleep(self.settings.settle_interval_s)

    async def settle_pass(self) -> int:
        """One look at every claimed task that ended and is due (docs/TASKS.md "Worker", "Settling
        up"): release the bond of our result that got no verdict, withdraw held credits, close the
        settled record where the board has rent to give back. Only tasks whose stored claim is this
        board account's are looked at, and the board's own record is read before every step. One
        task's failing call is logged and retried later; it never stops the others. Returns the
        number of tasks looked at."""
        due = await self.store.settle_due(self.board.account, self.clock())
        for record in due:
            if record.request_id in self._inflight:
                continue
            try:
                await self._settle_one(record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.settle_errors.inc()
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("settle_failed", request=_short(record.request_id), reason=reason)
                await self._settle_later(record, f"failed, retrying: {reason}")
        return len(due)

    async def _settle_later(self, record: SettleRecord, reason: str) -> None:
        now = self.clock()
        # The bound counts from the task's end or its deadline, whichever is later: a result to a request
        # with a deadline days away waits that long for its verdict, or to release its bond.
        task = await self.store.get(record.request_id)
        since = max(record.created_at, float(task.deadline) if task is not None else 0.0)
        if now - since > SETTLE_GIVE_UP_S:
            await self.store.settle_done(record.request_id, f"given up after {SETTLE_GIVE_UP_S:.0f}s: {reason}")
            log.warning("settle_given_up", request=_short(record.request_id), reason=reason)
            return
        wait = min(self.settings.settle_interval_s * 2 ** min(record.tries, 20), SETTLE_MAX_WAIT_S)
        if reason != record.reason:
            log.info("settle_waiting", request=_short(record.request_id), reason=reason, next_in_s=round(wait, 1))
        await self.store.settle_wait(record.request_id, reason, now + wait, record.tries + 1)

    async def _settle_done(self, record: SettleRecord, reason: str, close_txs: list[str] | None = None) -> None:
        await self.store.settle_done(record.request_id, reason, close_txs)
        log.info("task_settled", request=_short(record.request_id), reason=reason, closes=close_txs or [])

    @staticmethod
    def _record_gone(status: ClaimStatus) -> bool:
        """A request we claimed whose serve record the board no longer has: closed (its rent back).
        (The Solana board then reads the request from its receipt, marked closed by CloseServe: no
        claim counted, as a serve record exists from the first claim on.)"""
        return status.state is ServeState.NONE or (
            status.state in (ServeState.OPEN, ServeState.CLOSED) and status.claims == 0)

    async def _settle_one(self, record: SettleRecord) -> None:
        rid = record.request_id
        closer = self.board if isinstance(self.board, SettledCloser) else None
        status = await self.board.claim_status(rid)
        now = await self.chain_now()
        mine = status.claimant is not None and status.claimant == self.board.account
        if self._record_gone(status):
            return await self._settle_done(record, "the board's record of it is closed" if closer else
                                           "the board has no record of it")
        if mine and status.state is ServeState.ANSWERED:
            # Our result waits for its verdict: the bond comes back with a valid one, or by release_bond
            # once deadline + the board's settlement grace passed with none (the board says when).
            if now <= status.deadline:
                return await self._settle_later(record, "our result waits for its verdict")
            try:
                tx = await self.board.release_bond(rid)
            except BondRefused as exc:
                return await self._settle_later(record, f"bond not releasable yet: {exc.reason}")
            await self.store.bond_released(rid, tx)
            self.metrics.bonds_released.inc()
            log.info("bond_released", request=_short(rid), tx=tx, bond=status.bond)
            status = await self.board.claim_status(rid)
            if status.state is ServeState.ANSWERED:
                return await self._settle_later(record, "bond released; the board does not show it yet")
        elif mine and status.state is ServeState.CLAIMED:
            if status.claim_deadline is not None and status.claim_deadline >= now:
                return await self._settle_later(record, "our claim still runs")
            if closer is None:
                # The bond of a claim that ran out is forfeited (to refund_to): nothing comes back.
                return await self._settle_done(record, "our claim ran out without a result: its bond is forfeited")
            if now <= status.deadline:
                return await self._settle_later(record, "our claim ran out; the request is open until its deadline")
            # Past the deadline our expired claim only keeps the record from settling: expire it (the bond
            # is forfeited to refund_to whoever calls it) so the record's rent can come back.
            try:
                tx = await self.board.expire_claim(rid)
            except BondRefused as exc:
                return await self._settle_later(record, f"our expired claim cannot be expired yet: {exc.reason}")
            await self.store.claim_expired(rid, tx)
            log.info("claim_expired", request=_short(rid), tx=tx, why="to settle the record")
            status = await self.board.claim_status(rid)
        settled = status.state is ServeState.CLOSED or (status.state is ServeState.OPEN and now > status.deadline)
        if not settled:
            if closer is None and not mine:
                # Our claim is over (forfeited or lost); nothing is held for us and no rent to close.
                return await self._settle_done(record, "our claim is over: nothing is owed to this worker")
            return await self._settle_later(record, f"the board's record is not settled yet "
                                                    f"({status.state.name.lower()})")
        if not record.withdrawn:
            try:
                tx = await self.board.withdraw(rid)
            except BondRefused as exc:
                if exc.error not in ("NothingToWithdraw", "NOTHING_TO_WITHDRAW"):
                    raise
                tx = None  # refused as nothing held: done
            await self.store.credits_withdrawn(rid, tx)
            if tx is not None:
                self.metrics.credits_withdrawn.inc()
                log.info("credits_withdrawn", request=_short(rid), tx=tx)
        if closer is None:
            return await self._settle_done(record, "settled (no rent to close on this chain)")
        txs = await closer.close_settled(rid, serving_only=True)
        if txs:
            self.metrics.accounts_closed.inc(len(txs))
            log.info("record_closed", request=_short(rid), txs=txs)
            return await self._settle_done(record, "settled; its record closed (rent back)", txs)
        if self._record_gone(await self.board.claim_status(rid)):
            return await self._settle_done(record, "the board's record of it is closed")
        await self._settle_later(record, "settled, not closable yet (a credit waits for its owner, or the "
                                         "retention of a record another account paid for runs)")

    # --- shared steps ----------------------------------------------------------------------

    async def _finish(self, request_id: bytes, stage: TaskStage, reason: str) -> None:
        await self.store.finish(request_id, stage, reason)
        self.metrics.outcomes.labels(stage=stage.value).inc()
        (log.warning if stage is TaskStage.FAILED else log.info)(
            f"task_{stage.value}", request=_short(request_id), reason=reason)

    def _time_left(self, deadline: int) -> float:
        return deadline - self.clock()

    async def _sleep_before_retry(self, rid: bytes, deadline: int, attempts: int, reason: str) -> None:
        delay = self.settings.backoff.delay(attempts - 1)
        if self._time_left(deadline) <= delay:
            raise _Fail(f"{reason}; no time left before the deadline to retry")
        log.info("task_retry", request=_short(rid), in_s=round(delay, 2), reason=reason)
        await asyncio.sleep(delay)

    async def _with_retries(self, rid: bytes, deadline: int, attempt: Callable, what: str):
        attempts = 0
        while True:
            try:
                return await attempt()
            except _Retry as exc:
                attempts += 1
                await self.store.note(rid, f"{what}: {exc}")
                await self._sleep_before_retry(rid, deadline, attempts, f"{what}: {exc}")

    # --- input ------------------------------------------------------------------------------

    async def _input(self, request: TaskRequestV2) -> bytes:
        if request.input is not None:
            if len(request.input) > self.settings.max_input_bytes:
                raise _Skip(f"input is {len(request.input)} bytes; this worker takes at most "
                            f"{self.settings.max_input_bytes} (worker.max_input_bytes)")
            return request.input
        assert request.input_uri is not None and request.input_hash is not None
        data = await self._fetch(request.input_uri)
        if keccak256(data) != request.input_hash:
            raise _Fail(f"input fetched from {request.input_uri} does not hash to the request's input_hash; "
                        "the requester must publish the exact bytes it hashed")
        return data

    async def _fetch(self, uri: str) -> bytes:
        limit = self.settings.max_input_bytes
        if self._http is None:
            self._http = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.settings.input_fetch_timeout_s)
        try:
            async with self._http.get(uri, timeout=timeout, allow_redirects=True) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise _Retry(f"{uri} answered HTTP {resp.status}")
                if resp.status != 200:
                    raise _Fail(f"input URI {uri} answered HTTP {resp.status}; the requester must serve the input there")
                if resp.content_length is not None and resp.content_length > limit:
                    raise _Skip(f"input at {uri} is {resp.content_length} bytes; this worker takes at most {limit} "
                                "(worker.max_input_bytes)")
                data = await resp.content.read(limit + 1)
                # read(n) may return less than available; keep reading until EOF or over the limit.
                while len(data) <= limit:
                    chunk = await resp.content.read(limit + 1 - len(data))
                    if not chunk:
                        break
                    data += chunk
                if len(data) > limit:
                    raise _Skip(f"input at {uri} is larger than {limit} bytes (worker.max_input_bytes)")
                return data
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _Retry(f"cannot fetch {uri}: {type(exc).__name__}: {exc}") from None
