"""The relayer's delivery pipeline: every message is a pending operation

    observed --prepare--> ready --submit--> submitted --confirm--> confirmed
        ^                   ^                  |
        +---- re-prepare ---+---- resubmit ----+      (retries exhausted: dead, retryable)

with its stage, last reason and next attempt persisted in the store, so a restarted relayer goes on
where it stopped. A delivery whose receiver's handler failed (EVM Gateway status 2) is not delivered:
it is retried through the adapter's `retry_failed`, never counted as done.

Task results: a v1 TASK_RESULT gets its derived PROOF_ATTESTATION queued at once. A v2 result gets
the committee's verdict (valid or refused) in two envelopes, one to each board (docs/TASKS.md
"Verdict"): every field but the verdict comes from the result, so the relayer asks the members which
verdict they signed (`VerdictSource`) and queues both envelopes once t of them report the same one.

Submission is at-least-once; the destination gateway refuses a message id it has already accepted,
so acceptance is exactly-once, also with several relayers.

Each step (prepare, submit, confirm) looks at one message and returns an outcome value; only
`Relayer.apply` acts on outcomes (store, metrics, logs). Why a message waits is a `RetryReason`
(a closed set, stored), with a free-text detail beside it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from prometheus_client import Counter
from typing import Awaitable, Callable, Protocol

from relay.aio import wait_event
from relay.backoff import Backoff
from relay.batch import Batch
from relay.interfaces import ChainAdapter, DeliveryState, DeliveryStatus, Observation, ReceiptClose, ReceiptCloser, SignedBatch, SignedDelivery
from relay.envelope import Envelope
from relay.lifecycle import keep_running, run_until_stopped
from relay.log import get_logger
from relay.metrics import RelayerMetrics
from relay.policy import PaymentPolicy
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.pubsub import Broadcast
from relay.store import BatchMember, MessageRecord, NewReceipt, ReceiptState, RetryReason, Stage, StepWrite, Store, StoredBatch
from relay.tasks.attestation import AttestationError, VerdictReport, attestation_for, result_version, verdict_envelopes
from relay.tasks.payloads import VERDICT_LEN, ProofAttestation, ProofVerdict, TaskPayloadError

log = get_logger("relayer")

__all__ = [
    "Collected", "Confirmed", "Drop", "Outcome", "PipelineSettings", "Postpone", "Relayer", "Retry", "RetryReason",
    "SignatureSource", "Signed", "Submitted",
]


@dataclass(frozen=True, slots=True)
class Collected:
    """Outcome of asking the committee for a message's signature."""

    signature: bytes | None
    epoch: int
    reason: str = ""  # why there is no signature yet
    faulty: dict[int, str] = field(default_factory=dict)  # member index -> what was wrong
    refused: dict[int, str] = field(default_factory=dict)  # member index -> why it will not sign (403)


class SignatureSource(Protocol):
    async def collect(self, envelope: Envelope, source_tx: str) -> Collected: ...


class RootSignatureSource(SignatureSource, Protocol):
    """A signature source that can also collect the committee's signature over a batch root
    (relay.collector.CommitteeCollector.collect_root); batching needs one."""

    async def collect_root(self, batch: Batch, source_txs: list[str]) -> Collected: ...


class VerdictSource(Protocol):
    """Which verdict the committee's members signed for a v2 result (relay.tasks.attestation.CommitteeVerdicts)."""

    async def report(self, result_id: bytes) -> VerdictReport: ...


_WATCH_ENDED = object()  # queued by a watcher's reader when the watcher returned or failed
PENDING_VERDICTS = "verdicts:pending"  # store cursor: v2 results whose verdicts are not queued yet (JSON)
RECEIPTS_SCANNED = "receipts:scanned"  # store cursor: confirmed before this (unix time) had their receipts recorded


@dataclass(frozen=True, slots=True)
class ReceiptMetrics:
    closed: Counter  # tessera_receipts_closed{dst_domain, by}
    lamports: Counter  # tessera_receipt_lamports_recovered{dst_domain}


def _receipt_metrics(metrics: RelayerMetrics) -> ReceiptMetrics:
    """The receipt-closing counters, registered once on the relayer's registry."""
    found = getattr(metrics, "_receipt_metrics", None)
    if found is None:
        found = ReceiptMetrics(
            Counter("tessera_receipts_closed", "Destination receipts closed (their rent back with their payer, this "
                    "relayer), by who closed them (us, or other: found closed, e.g. by the receiver)",
                    ["dst_domain", "by"], registry=metrics.registry),
            Counter("tessera_receipt_lamports_recovered", "Rent of the receipts this relayer paid for that came "
                    "back to it (lamports)", ["dst_domain"], registry=metrics.registry))
        metrics._receipt_metrics = found  # type: ignore[attr-defined]
    return found


# -- outcomes of a step ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Signed:
    """prepare: the committee's combined signature is verified; the message is ready to submit."""

    epoch: int
    signature: bytes
    faulty: dict[int, str] = field(default_factory=dict)  # members whose partials were invalid


@dataclass(frozen=True, slots=True)
class Submitted:
    """submit: the delivery transaction was sent; confirm it next."""

    tx: str
    chain: str


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The destination has the message: delivered by us, or by another relayer ("other")."""

    by: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after a backoff, counting an attempt (dead once the attempts are used up), from
    `stage` if given, else from the same stage."""

    reason: RetryReason
    detail: str
    stage: Stage | None = None
    faulty: dict[int, str] = field(default_factory=dict)  # members whose partials were invalid


@dataclass(frozen=True, slots=True)
class Postpone:
    """Look again after `delay` seconds without counting an attempt: waiting is not failing."""

    reason: RetryReason
    detail: str
    delay: float


@dataclass(frozen=True, slots=True)
class Drop:
    """Nothing will change by trying again: straight to the dead letter."""

    reason: RetryReason
    detail: str


Outcome = Signed | Submitted | Confirmed | Retry | Postpone | Drop
Step = Callable[[MessageRecord], Awaitable[Outcome]]


@dataclass
class PipelineSettings:
    backoff: Backoff = field(default_factory=Backoff)
    confirm_poll: float = 0.25  # seconds between confirmation checks of a submitted delivery
    # ... while no more than `concurrency` deliveries are due for a check in a round (a lone message):
    # its finality is seen within this instead of up to confirm_poll late (~0.1 s of its latency on
    # average). Many in flight keep confirm_poll: every check of a message is a store write.
    confirm_poll_few: float = 0.05
    submitted_timeout: float = 120.0  # a delivery not final by then is checked and resubmitted
    concurrency: int = 16
    gap_check_interval: float = 5.0
    idle_wait: float = 1.0
    order_poll: float = 0.5  # seconds between checks whether an attestation's result has landed
    # A v2 verdict to the requester's board waits at most this long for its result to land first: the
    # board keeps a verdict that arrives early, so the order is only an optimisation.
    order_wait: float = 30.0
    verdict_poll: float = 0.2  # first interval between asking the members for a v2 result's verdict
    verdict_poll_cap: float = 5.0  # the interval grows to this
    verdict_wait: float = 3 * 3600.0  # give up asking after this long (the task's deadline is long past)
    # Batching (docs/PROTOCOL.md "Batch attestations"): due messages of one lane (source -> destination)
    # go together under one committee signature over their Merkle root, up to batch_size of them; a
    # lane's first message waits at most batch_wait for others. 1 turns batching off.
    batch_size: int = 1
    batch_wait: float = 0.05
    batch_close_interval: float = 1.0  # seconds between sweeps closing the roots of finished batches
    # Receipts whose rent comes back (Solana CloseReceipt): the relayer closes the receipts its own key
    # paid for once they are this old ([relayer] close_receipts_after_s; the program lets anyone close
    # a receipt after its retention, 86,400 s, and the receiver at any time).
    close_receipts_after: float = 86_400.0
    receipt_close_interval: float = 30.0  # seconds between sweeps recording and closing receipts
    receipt_close_batch: int = 100  # receipts handed to the adapter per call (it packs them into transactions)
    # Confirmed messages are looked at for receipts from this long before the last sweep on: covers a
    # write committed just after a sweep read, and replicas' clocks that differ by less than this.
    receipt_scan_margin: float = 300.0
    receipt_too_early_retry: float = 300.0  # a close refused as too early is tried again after at least this
    # A watcher's observations that arrive while earlier ones are being written are recorded together,
    # with their cursor, in one store transaction: at most this many (the watcher waits beyond it).
    observe_batch: int = 500
    # The work loop refreshes the queue gauges (a count of every message by stage and reason) at most
    # this often, not after every round; GET /metrics refreshes them on each scrape anyway.
    metrics_interval: float = 1.0


class Relayer:
    def __init__(
        self,
        store: Store,
        adapters: dict[int, ChainAdapter],
        signatures: SignatureSource,
        settings: PipelineSettings | None = None,
        metrics: RelayerMetrics | None = None,
        name: str = "relayer",
        verdicts: VerdictSource | None = None,
        policy: PaymentPolicy | None = None,
    ) -> None:
        self.store = store
        self.policy = policy or PaymentPolicy()
        self.adapters = adapters
        self.signatures = signatures
        self.verdicts = verdicts
        self._verdict_tasks: dict[bytes, asyncio.Task[None]] = {}
        self._verdicts_followed: set[bytes] = set()
        self._pending_lock = asyncio.Lock()
        self.settings = settings or PipelineSettings()
        self.metrics = metrics or RelayerMetrics()
        self.name = name
        # Ids of messages whose record just changed (observed, or an outcome applied): the API's streams.
        self.updates: Broadcast[bytes] = Broadcast()
        self._wake = asyncio.Event()
        # `concurrency` steps at once per stage: a burst's confirmations (one per message on Solana) or
        # VerifyRoot waits never take the permits its root collections need.
        self._permits = {stage: asyncio.Semaphore(self.settings.concurrency)
                         for stage in (Stage.OBSERVED, Stage.READY, Stage.SUBMITTED)}
        self._moved_on = 0  # messages signed or submitted so far (process_due passes while it grows)
        self._lane_seen: dict[tuple[int, int], float] = {}  # lane -> newest observed_at met by _group_observed
        self._held_until: float | None = None  # the earliest a lane's held (young, small) batch is due
        self._confirm_poll = self.settings.confirm_poll  # this round's (_set_confirm_poll)
        self._writes = _GroupCommit(store)  # every step's store write goes through it (apply_many)
        self._metrics_due = 0.0  # (monotonic) when the work loop refreshes the queue gauges next
        self.log = log.bind(relayer=name)

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self._resume_verdicts()
        try:
            await run_until_stopped(
                stop,
                *(keep_running(f"watch {a.name}", lambda a=a: self._watch(a), self.log) for a in self.adapters.values()),
                self._process_forever(stop),
                self._repair_gaps_forever(stop),
                *([self._close_batches_forever(stop)] if self.batching else []),
                *([self._close_receipts_forever(stop)] if self._receipt_closers() else []),
            )
        finally:
            for task in list(self._verdict_tasks.values()):
                task.cancel()
            await asyncio.gather(*self._verdict_tasks.values(), return_exceptions=True)

    async def _watch(self, adapter: ChainAdapter) -> None:
        """Record what the chain's watcher yields. The observations that arrive while the previous
        ones are being written go together: one store transaction for them and the cursor past them
        (`_observe_group`), never the cursor without the observations it covers. When the watcher
        fails, what it yielded before is recorded first, so its restart resumes after it."""
        cursor_name = f"watch:{adapter.domain}"
        cursor = await self.store.get_cursor(cursor_name)
        self.log.info("watching", chain=adapter.name, domain=adapter.domain, cursor=cursor)
        limit = max(1, self.settings.observe_batch)
        queue: asyncio.Queue[Observation | object] = asyncio.Queue()
        room = asyncio.Event()
        room.set()

        async def pull() -> None:
            async for observation in adapter.watch(cursor):
                queue.put_nowait(observation)
                if queue.qsize() >= limit:  # the writes fall behind: wait for them
                    room.clear()
                    await room.wait()

        puller = asyncio.get_running_loop().create_task(pull())
        puller.add_done_callback(lambda _task: queue.put_nowait(_WATCH_ENDED))
        try:
            while True:
                group = [await queue.get()]
                while not queue.empty() and len(group) < limit:
                    group.append(queue.get_nowait())
                room.set()
                ended = group[-1] is _WATCH_ENDED  # (nothing is queued after it)
                observations = [o for o in group if isinstance(o, Observation)]
                await self._observe_group(cursor_name, observations)
                if ended:
                    puller.result()  # the watcher's error, if it failed: keep_running restarts it
                    return
        finally:
            puller.cancel()
            await asyncio.gather(puller, return_exceptions=True)

    async def _observe_group(self, cursor_name: str, observations: list[Observation]) -> None:
        """Observations of one watcher, in order, with the watch cursor: plain messages in one store
        transaction with the cursor past the last of them; a TASK_RESULT (which queues more: its
        attestation or its verdicts) the way `observe` does it, its cursor after it."""
        run: list[Observation] = []
        for observation in observations:
            if observation.envelope.kind == MessageKind.TASK_RESULT:
                await self._observe_many(cursor_name, run)
                run = []
                await self.observe(observation.envelope, observation.source_tx, observation.block_time)
                await self.store.set_cursor(cursor_name, observation.cursor)
            else:
                run.append(observation)
        await self._observe_many(cursor_name, run)

    async def _observe_many(self, cursor_name: str, observations: list[Observation]) -> None:
        """`observe` for messages that queue nothing more, with their cursor, in one transaction."""
        if not observations:
            return
        fresh = await self.store.add_observed_many([(o.envelope, o.source_tx) for o in observations],
                                                   cursor=(cursor_name, observations[-1].cursor))
        for observation, new in zip(observations, fresh):
            if new:
                envelope = observation.envelope
                self.log.info("observed", msg_id=envelope.message_id.hex(), src=envelope.src_domain,
                              dst=envelope.dst_domain, nonce=envelope.nonce, tx=observation.source_tx)
                self.updates.publish(envelope.message_id)
        if any(fresh):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def observe(self, envelope: Envelope, source_tx: str, block_time: int | None = None) -> None:
        if await self.store.add_observed(envelope, source_tx):
            self.log.info("observed", msg_id=envelope.message_id.hex(), src=envelope.src_domain,
                          dst=envelope.dst_domain, nonce=envelope.nonce, tx=source_tx)
            self.updates.publish(envelope.message_id)
            self._wake.set()
        match envelope.kind:
            case MessageKind.TASK_RESULT if result_version(envelope) == 2:  # its verdict, to both boards
                await self._follow_verdict(envelope, source_tx, block_time)
            case MessageKind.TASK_RESULT:  # its PROOF_ATTESTATION is carried too
                await self._enqueue_attestation(envelope, source_tx, block_time)

    async def _enqueue_attestation(self, result: Envelope, source_tx: str, block_time: int | None) -> None:
        """A TASK_RESULT also gets its PROOF_ATTESTATION carried: derived the way attesters derive it,
        so the relayer knows its id at once; it is only delivered if the committee co-signs it."""
        if block_time is None:
            self.log.warning("no attestation for result: the source chain reported no block time",
                             msg_id=result.message_id.hex(), tx=source_tx)
            return
        try:
            attestation = attestation_for(result, block_time)
        except AttestationError as exc:
            self.log.warning("no attestation for result", msg_id=result.message_id.hex(), reason=str(exc))
            return
        if await self.store.add_observed(attestation, source_tx):
            self.log.info("attestation queued", msg_id=attestation.message_id.hex(), result_id=result.message_id.hex(),
                          dst=attestation.dst_domain)
            self.updates.publish(attestation.message_id)
            self._wake.set()

    # -- v2 verdicts ------------------------------------------------------------------------------
    async def _pending_verdicts(self) -> dict[str, int | None]:
        raw = await self.store.get_cursor(PENDING_VERDICTS)
        try:
            pending = json.loads(raw) if raw else {}
        except ValueError:
            pending = {}
        return pending if isinstance(pending, dict) else {}

    async def _mark_verdict(self, result_id: bytes, block_time: int | None, pending: bool) -> None:
        async with self._pending_lock:
            marks = await self._pending_verdicts()
            if pending:
                marks[result_id.hex()] = block_time
            else:
                marks.pop(result_id.hex(), None)
            await self.store.set_cursor(PENDING_VERDICTS, json.dumps(marks))

    async def _follow_verdict(self, result: Envelope, source_tx: str, block_time: int | None) -> None:
        """Ask the committee for the verdict on a v2 result until t members report the same one, then
        queue its two envelopes. Remembered in the store, so a restart asks again."""
        if self.verdicts is None:
            self.log.warning("no verdict source: the verdict on this v2 result is not carried",
                             msg_id=result.message_id.hex())
            return
        if result.message_id in self._verdict_tasks or result.message_id in self._verdicts_followed:
            return  # (a re-observation; after a restart a finished one is asked once more: harmless)
        self._verdicts_followed.add(result.message_id)
        await self._mark_verdict(result.message_id, block_time, True)
        task = asyncio.get_running_loop().create_task(self._await_verdict(result, source_tx, block_time))
        self._verdict_tasks[result.message_id] = task
        task.add_done_callback(lambda _t, rid=result.message_id: self._verdict_tasks.pop(rid, None))

    async def _resume_verdicts(self) -> None:
        for result_hex, block_time in (await self._pending_verdicts()).items():
            record = await self.store.get(bytes.fromhex(result_hex))
            if record is None:
                await self._mark_verdict(bytes.fromhex(result_hex), None, False)
                continue
            await self._follow_verdict(record.decoded, record.source_tx, block_time)

    async def _await_verdict(self, result: Envelope, source_tx: str, block_time: int | None) -> None:
        assert self.verdicts is not None
        result_id = result.message_id
        started, delay = time.monotonic(), self.settings.verdict_poll
        while time.monotonic() - started < self.settings.verdict_wait:
            try:
                report = await self.verdicts.report(result_id)
            except Exception as exc:  # the members' API is best effort: ask again
                self.log.warning("verdict query failed", result_id=result_id.hex(), error=f"{type(exc).__name__}: {exc}")
                report = VerdictReport([], 0, 0)
            queued = await self._queue_verdicts(result, source_tx, block_time, report.agreed)
            if queued:
                break
            if report.hopeless:
                self.log.warning("no verdict on the result: too many members abstained", result_id=result_id.hex(),
                                 abstained=report.final_without)
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.settings.verdict_poll_cap)
        else:
            self.log.warning("gave up waiting for the verdict on a result", result_id=result_id.hex())
        await self._mark_verdict(result_id, None, False)

    async def _queue_verdicts(self, result: Envelope, source_tx: str, block_time: int | None,
                              payloads: list[bytes]) -> bool:
        for payload in payloads:
            try:
                verdict = ProofVerdict.decode(payload)
                if block_time is not None and verdict.submitted_at != block_time:
                    raise AttestationError(f"submitted_at {verdict.submitted_at} is not the result's block time "
                                           f"{block_time}")
                envelopes = verdict_envelopes(result, verdict)
            except (TaskPayloadError, AttestationError) as exc:
                self.log.warning("members report a verdict that does not fit the result", result_id=result.message_id.hex(),
                                 reason=str(exc))
                continue
            for envelope in envelopes:
                if await self.store.add_observed(envelope, source_tx):
                    self.log.info("verdict queued", msg_id=envelope.message_id.hex(), result_id=result.message_id.hex(),
                                  verdict=verdict.verdict.name.lower(), reason=verdict.reason.name,
                                  dst=envelope.dst_domain)
            self._wake.set()
            return True
        return False

    async def _repair_gaps_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.repair_gaps()
            await asyncio.sleep(self.settings.gap_check_interval)

    async def repair_gaps(self) -> int:
        """Nonces are gap-free per source; a hole means a missed event: look it up again."""
        found = 0
        for domain, adapter in self.adapters.items():
            if domain == COMMITTEE_DOMAIN:  # attestations share nonce 0: no sequence to repair
                continue
            for nonce in await self.store.missing_nonces(domain):
                try:
                    observation = await adapter.find_nonce(nonce)
                except Exception as exc:
                    self.log.warning("nonce gap lookup failed", chain=adapter.name, nonce=nonce, error=str(exc))
                    break
                if observation is None:
                    self.log.warning("nonce gap", chain=adapter.name, nonce=nonce, detail="not found final yet")
                    continue
                self.log.info("nonce gap repaired", chain=adapter.name, nonce=nonce, tx=observation.source_tx)
                await self.observe(observation.envelope, observation.source_tx, observation.block_time)
                found += 1
        return found

    async def _process_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the round: a message observed while it runs wakes the next one at once
            # (a lane's batch held for company must not wait out its cap when the company arrived).
            self._wake.clear()
            try:
                await self.process_due()
            except Exception:  # a bug or a store error must not stop the relayer silently
                self.log.exception("processing round failed")
            if time.monotonic() >= self._metrics_due:  # (GET /metrics refreshes them on every scrape too)
                self._metrics_due = time.monotonic() + self.settings.metrics_interval
                await self.metrics_refresh()
            next_due = await self.store.next_due_at()
            wait = self.settings.idle_wait if next_due is None else max(0.0, min(self.settings.idle_wait, next_due - time.time()))
            held, self._held_until = self._held_until, None
            if held is not None:  # due messages held back for their batch: look again when the wait cap ends
                until_held = max(0.0, held - time.time())
                wait = until_held if wait == 0.0 else min(wait, until_held)
            await wait_event(self._wake, wait)

    async def metrics_refresh(self) -> None:
        self.metrics.set_queue(await self.store.counts())
        for adapter in self.adapters.values():
            for endpoint in adapter.health():
                self.metrics.rpc_errors.labels(chain=adapter.name, endpoint=endpoint.url).set(endpoint.total_errors)
                self.metrics.rpc_healthy.labels(chain=adapter.name, endpoint=endpoint.url).set(int(endpoint.healthy))

    async def process_due(self) -> int:
        """One pass over every due operation of every active stage (batches first, when batching).
        The stages run side by side: each took its own due records first, and a message is due in
        one stage at a time, so no message is stepped twice; a burst's roots being collected do not
        hold up the submission and confirmation of the batches signed before them.
        Up to three such passes, while the one before moved messages on (prepared or submitted
        them), so a message goes as far in one call as when the stages ran one after another."""
        handled = 0
        for _ in range(3):
            moved_on = self._moved_on
            counts = await asyncio.gather(
                self._process_stage(Stage.OBSERVED, self.prepare), self._process_stage(Stage.READY, self.submit),
                self._process_stage(Stage.SUBMITTED, self.confirm))
            handled += sum(counts)
            if self._moved_on == moved_on:  # nothing signed or submitted: the next pass has nothing new
                break
        return handled

    async def _process_stage(self, stage: Stage, step: Step) -> int:
        if not self.batching:
            records = await self.store.due(stage)
            self._set_confirm_poll(stage, records)
            await asyncio.gather(*(self._step(step, r) for r in records))
            return len(records)
        # Enough for every step the stage's permits let run at once to be a full batch: a burst is
        # taken `concurrency` batches per round, not four.
        records = await self.store.due(stage, limit=max(100, self.settings.concurrency * self.settings.batch_size))
        self._set_confirm_poll(stage, records)
        members = await self.store.batch_members([r.message_id for r in records])
        match stage:
            case Stage.OBSERVED:
                singles, batch_steps = self._group_observed(records)
            case Stage.READY:
                singles, batch_steps = await self._group_ready(records, members)
            case _:
                def confirm_step(r: MessageRecord) -> Awaitable[Outcome]:
                    return self.confirm(r, in_batch=r.message_id in members)
                singles, batch_steps = self._group_submitted(records, members)
                step = confirm_step
        await asyncio.gather(*batch_steps, *(self._step(step, r) for r in singles))
        return len(records)

    def _set_confirm_poll(self, stage: Stage, records: list[MessageRecord]) -> None:
        """The interval of this round's confirmation checks: short while few are due."""
        if stage is Stage.SUBMITTED:
            few = len(records) <= self.settings.concurrency
            self._confirm_poll = (min(self.settings.confirm_poll_few, self.settings.confirm_poll) if few
                                  else self.settings.confirm_poll)

    # -- batches ---------------------------------------------------------------------------------
    @property
    def batching(self) -> bool:
        return self.settings.batch_size > 1 and hasattr(self.signatures, "collect_root")

    def _batchable(self, record: MessageRecord) -> bool:
        """Messages of a chain's gateway to a destination that takes batches. Committee messages
        (domain 0: attestations, verdicts) keep the single path: their order and their signing differ."""
        destination = self._destination(record)
        return (record.src_domain != COMMITTEE_DOMAIN and record.kind != MessageKind.COMMITTEE_ROTATION
                and destination is not None and hasattr(destination, "submit_batch"))

    def _group_observed(self, records: list[MessageRecord]) -> tuple[list[MessageRecord], list[Awaitable[None]]]:
        """Due observed messages per lane, in nonce order, cut at batch_size. A lane's part batch waits
        until its oldest message has waited batch_wait (held: not stepped this round); a lone message
        past the wait takes the single path. So does a lone message on a quiet lane (nothing else
        observed on it within batch_wait before it) at once: no company is on its way, and waiting
        would only add the wait to its latency (a lane with traffic still gathers its messages)."""
        now = time.time()
        size, wait = self.settings.batch_size, self.settings.batch_wait
        singles: list[MessageRecord] = []
        lanes: dict[tuple[int, int], list[MessageRecord]] = {}
        for record in records:
            # A message whose (batch) delivery reverted goes the single way next: one member of a
            # batch (a receiver burning more gas on chain than in the measured run) could otherwise
            # revert every batch it is put in again, and its neighbours with it until dead-lettered.
            if self._batchable(record) and record.reason_code is not RetryReason.DELIVERY_REVERTED:
                lanes.setdefault((record.src_domain, record.dst_domain), []).append(record)
            else:
                singles.append(record)
        steps: list[Awaitable[None]] = []
        for key, lane in lanes.items():
            lane.sort(key=lambda r: r.nonce)
            before = self._lane_seen.get(key)  # the newest observation of an earlier round on this lane
            self._lane_seen[key] = max(before or 0.0, *(r.observed_at for r in lane))
            for start in range(0, len(lane), size):
                chunk = lane[start:start + size]
                release = min(r.observed_at for r in chunk) + wait
                quiet = len(lane) == 1 and (before is None or chunk[0].observed_at - before > wait)
                if len(chunk) < size and release > now and not quiet:
                    self._held_until = release if self._held_until is None else min(self._held_until, release)
                elif len(chunk) == 1:
                    singles.append(chunk[0])
                else:
                    steps.append(self._prepare_batch(chunk))
        return singles, steps

    async def _prepare_batch(self, chunk: list[MessageRecord]) -> None:
        """The committee's signature over the chunk's root; each message then READY with its place in
        the batch stored. When the committee does not sign the root, each message goes the single way."""
        reason = ""
        collected: Collected | None = None
        # As for a single message: one delivered before (by another relayer, or re-observed after a
        # restart) is confirmed without asking for a root signature that would cost a pairing on-chain.
        destination = self._destination(chunk[0])
        assert destination is not None
        delivered = await asyncio.gather(*(destination.is_delivered(r.message_id, r.decoded) for r in chunk),
                                         return_exceptions=True)  # (a failed read: not known delivered)
        await self.apply_many([(r, Confirmed(by="other")) for r, done in zip(chunk, delivered) if done is True])
        chunk = [r for r, done in zip(chunk, delivered) if done is not True]
        if len(chunk) < 2:
            await asyncio.gather(*(self._step(self.prepare, r) for r in chunk))
            return
        refusals: list[tuple[MessageRecord, Outcome]] = []
        # The payment policy first, as for a single message; the members' fees are read concurrently
        # (the adapters put concurrent reads in one request).
        verdicts = await asyncio.gather(*(self._unpaid(r) for r in chunk), return_exceptions=True)
        for record, verdict in zip(chunk, verdicts):
            refused: Outcome | None
            if isinstance(verdict, BaseException):
                if not isinstance(verdict, Exception):
                    raise verdict
                # the fee could not be read: try again later, not refused
                refused = Retry(RetryReason.STEP_FAILED, f"payment policy: {type(verdict).__name__}: {verdict}")
            else:
                refused = verdict
            if refused is not None:
                refusals.append((record, refused))
        await self.apply_many(refusals)
        refused_ids = {r.message_id for r, _ in refusals}
        chunk = [r for r in chunk if r.message_id not in refused_ids]
        if not chunk:
            return
        async with self._permits[Stage.OBSERVED]:
            try:
                batch = Batch.of([r.decoded for r in chunk])
                collected = await self.signatures.collect_root(batch, [r.source_tx for r in chunk])  # type: ignore[attr-defined]
                reason = collected.reason
            except Exception as exc:  # noqa: BLE001 - the single path is the fallback
                reason = f"{type(exc).__name__}: {exc}"
            if collected is not None and collected.signature is not None:
                await self.store.add_batch(batch.root, batch.src_domain, batch.dst_domain, collected.epoch,
                                           collected.signature, batch.message_ids,
                                           [batch.proof(i) for i in range(len(chunk))])
        if collected is None or collected.signature is None:
            self.log.info("root not signed: delivering one by one", count=len(chunk), src=chunk[0].src_domain,
                          dst=chunk[0].dst_domain, reason=reason)
            await asyncio.gather(*(self._step(self.prepare, r) for r in chunk))
            return
        self.log.info("root signed", root=batch.root.hex(), count=len(chunk), src=batch.src_domain,
                      dst=batch.dst_domain, epoch=collected.epoch)
        # Every member READY in one transaction (the faulty members counted once, with the first).
        await self.apply_many([(record, Signed(collected.epoch, collected.signature,
                                               faulty=collected.faulty if i == 0 else {}))
                               for i, record in enumerate(chunk)])

    async def _group_ready(self, records: list[MessageRecord], members: dict[bytes, BatchMember]
                           ) -> tuple[list[MessageRecord], list[Awaitable[None]]]:
        """Ready messages signed as part of a batch (their signature is their batch's), by root."""
        singles: list[MessageRecord] = []
        by_root: dict[bytes, list[tuple[MessageRecord, BatchMember]]] = {}
        for record in records:
            member = members.get(record.message_id)
            if member is None or record.reason_code is RetryReason.HANDLER_FAILED:
                singles.append(record)
            else:
                by_root.setdefault(member.root, []).append((record, member))
        steps: list[Awaitable[None]] = []
        for root, group in by_root.items():
            stored = await self.store.batch(root)
            if stored is None:
                singles.extend(r for r, _ in group)
                continue
            mine = [(r, m) for r, m in group if r.signature == stored.signature and r.epoch == stored.epoch]
            singles.extend(r for r, m in group if (r, m) not in mine)  # signed singly since
            if mine:  # in tree order (members made ready together share one next_attempt_at)
                steps.append(self._submit_batch(stored, sorted(mine, key=lambda rm: rm[1].index)))
        return singles, steps

    async def _submit_batch(self, stored: StoredBatch, group: list[tuple[MessageRecord, BatchMember]]) -> None:
        """Deliver the group's messages of one signed batch (the adapter verifies the root at most
        once); each message then SUBMITTED with its own transaction id, or retried."""
        destination = self.adapters.get(stored.dst_domain)
        outcomes: dict[bytes, Outcome] = {}
        async with self._permits[Stage.READY]:
            try:
                assert destination is not None
                envelopes = await self.store.envelopes(list(stored.message_ids))
                batch = Batch.of([Envelope.decode(envelopes[m]) for m in stored.message_ids])
                sent = await destination.submit_batch(SignedBatch(batch, stored.epoch, stored.signature),
                                                      [m.index for _, m in group])
                for record, member in group:
                    tx = sent.get(member.index)
                    outcomes[record.message_id] = (
                        Submitted(tx, destination.name) if tx else
                        Retry(RetryReason.SUBMIT_FAILED, f"not sent with its batch 0x{stored.root.hex()} (see the log)"))
            except Exception as exc:  # noqa: BLE001 - every member retries
                for record, _ in group:
                    outcomes[record.message_id] = Retry(RetryReason.SUBMIT_FAILED,
                                                        f"batch 0x{stored.root.hex()}: {type(exc).__name__}: {exc}")
        await self.apply_many([(record, outcomes[record.message_id]) for record, _ in group])

    async def _close_batches_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.close_finished_batches()
            except Exception:  # noqa: BLE001 - closing gives rent back; it is retried next sweep
                self.log.exception("closing finished batches failed")
            await asyncio.sleep(self.settings.batch_close_interval)

    async def close_finished_batches(self) -> int:
        """Batches none of whose messages is still in flight: their roots closed on the destination
        (Solana gives the root account's rent back). Returns how many were closed."""
        closed = 0
        for stored in await self.store.finished_batches():
            destination = self.adapters.get(stored.dst_domain)
            envelopes = await self.store.envelopes(list(stored.message_ids))
            if destination is not None and hasattr(destination, "close_batch") and len(envelopes) == len(stored.message_ids):
                batch = Batch.of([Envelope.decode(envelopes[m]) for m in stored.message_ids])
                await destination.close_batch(SignedBatch(batch, stored.epoch, stored.signature))
            await self.store.close_batch(stored.root)
            closed += 1
        return closed

    # -- receipts whose rent comes back (Solana CloseReceipt; relay.interfaces.ReceiptCloser) --------
    def _receipt_closers(self) -> dict[int, ReceiptCloser]:
        """Destinations whose receipts hold rent this relayer's key can get back."""
        return {domain: adapter for domain, adapter in self.adapters.items()
                if isinstance(adapter, ReceiptCloser) and adapter.receipt_payer() is not None}

    async def _close_receipts_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.record_receipts()
                await self.close_due_receipts()
            except Exception:  # noqa: BLE001 - the rent stays where it is until the next sweep
                self.log.exception("closing receipts failed")
            await wait_event(stop, self.settings.receipt_close_interval)

    async def record_receipts(self, now: float | None = None) -> int:
        """Look at the receipt of every confirmed message to a receipt-closing destination not looked
        at yet, and record it (store `receipts`): open when this relayer's key paid its rent, else
        foreign, not closable (the program keeps it) or gone. Returns how many were recorded. The
        scan resumes from a cursor `receipt_scan_margin` before the last sweep, so nothing confirmed
        meanwhile (also by another replica, also before a restart) is missed."""
        closers = self._receipt_closers()
        if not closers:
            return 0
        now = time.time() if now is None else now
        raw = await self.store.get_cursor(RECEIPTS_SCANNED)
        since = float(raw) if raw else 0.0
        recorded, page = 0, 200
        while True:
            records = await self.store.unrecorded_confirmed(sorted(closers), since, limit=page)
            by_domain: dict[int, list[MessageRecord]] = {}
            for record in records:
                by_domain.setdefault(record.dst_domain, []).append(record)
            for domain, group in by_domain.items():
                adapter = closers[domain]
                ours = adapter.receipt_payer()
                infos = await adapter.receipt_infos([r.decoded for r in group])
                found: list[NewReceipt] = []
                for record in group:
                    info = infos.get(record.message_id)
                    if info is None:
                        state, payer, at, lamports = ReceiptState.GONE, b"", record.confirmed_at or now, 0
                    else:
                        payer, at, lamports = info.payer, float(info.delivered_at), info.lamports
                        state = (ReceiptState.NOT_CLOSABLE if not info.closable else
                                 ReceiptState.OPEN if info.payer == ours else ReceiptState.FOREIGN)
                    found.append(NewReceipt(record.message_id, domain, record.envelope, payer, at, lamports, state))
                recorded += len(await self.store.add_receipts(found))  # (one transaction for the group)
            if len(records) < page:
                break
        if now - self.settings.receipt_scan_margin > since:
            await self.store.set_cursor(RECEIPTS_SCANNED, repr(now - self.settings.receipt_scan_margin))
        if recorded:
            self.log.info("receipts recorded", count=recorded)
        return recorded

    async def close_due_receipts(self, now: float | None = None) -> int:
        """Close the open receipts (paid by this relayer's key) delivered `close_receipts_after` ago
        or more, several per transaction; mark each closed (a receipt already gone counts as closed:
        its rent went back to its payer, us, either way). Too early on the chain's clock, or a
        failure: looked at again after a backoff. Returns how many were marked closed."""
        marked = 0
        metrics = _receipt_metrics(self.metrics)
        for domain, adapter in self._receipt_closers().items():
            payer = adapter.receipt_payer()
            assert payer is not None
            while True:
                at = time.time() if now is None else now
                due = await self.store.due_receipts(domain, payer, self.settings.close_receipts_after, now=at,
                                                    limit=self.settings.receipt_close_batch)
                if not due:
                    break
                results = await adapter.close_receipts([r.decoded for r in due])
                deferred = 0
                for receipt in due:
                    result = results.get(receipt.message_id) or ReceiptClose("failed", detail="no answer from the adapter")
                    if result.outcome == "deferred":
                        # Not worth closing yet (the window's bitmap would cost more than these return):
                        # due again at the next pass, with every other receipt of its window, so they add up.
                        await self.store.receipt_retry_later(receipt.message_id, f"deferred: {result.detail}", at)
                        deferred += 1
                        continue
                    if result.outcome in ("closed", "already_closed"):
                        by = "us" if result.outcome == "closed" else "other"
                        if await self.store.mark_receipt_closed(receipt.message_id, by=by, tx=result.tx):
                            marked += 1
                            metrics.closed.labels(dst_domain=str(domain), by=by).inc()
                            metrics.lamports.labels(dst_domain=str(domain)).inc(receipt.lamports)
                        continue
                    delay = self.settings.backoff.delay(receipt.attempts)
                    if result.outcome == "too_early":  # the chain's clock has not reached the retention yet:
                        delay = self.settings.receipt_too_early_retry  # not a failure (no backoff); all together
                    await self.store.receipt_retry_later(receipt.message_id, f"{result.outcome}: {result.detail}",
                                                         at + max(delay, 1.0))
                    self.log.info("receipt not closed", msg_id=receipt.message_id.hex(), outcome=result.outcome,
                                  detail=result.detail, in_s=round(max(delay, 1.0), 1))
                if len(due) < self.settings.receipt_close_batch or deferred == len(due):
                    break
        if marked:
            self.log.info("receipts closed", count=marked)
        return marked

    async def _step(self, step: Step, record: MessageRecord) -> None:
        async with self._permits.get(record.stage, self._permits[Stage.OBSERVED]):
            try:
                outcome = await step(record)
            except Exception as exc:
                outcome = Retry(RetryReason.STEP_FAILED, f"{type(exc).__name__}: {exc}")
            await self.apply(record, outcome)

    # -- steps: each looks at one message and says what should happen ---------------------------
    def _destination(self, record: MessageRecord) -> ChainAdapter | None:
        return self.adapters.get(record.dst_domain)

    async def prepare(self, record: MessageRecord) -> Outcome:
        destination = self._destination(record)
        if destination is None:
            return Drop(RetryReason.NO_ROUTE,
                        f"no adapter for destination domain {record.dst_domain}: add the chain to the config")
        if await destination.is_delivered(record.message_id, record.decoded):
            return Confirmed(by="other")
        if refused := await self._unpaid(record):
            return refused
        collected = await self.signatures.collect(record.decoded, record.source_tx)
        if collected.signature is not None:
            return Signed(collected.epoch, collected.signature, faulty=collected.faulty)
        if collected.refused:
            # Kept retrying (a member may still be re-executing), but the reasons are what
            # `relay status` and the dead letter show.
            refusals = "; ".join(f"refused by member {i}: {why}" for i, why in sorted(collected.refused.items()))
            return Retry(RetryReason.REFUSED_BY_MEMBERS, f"{refusals} ({collected.reason})", faulty=collected.faulty)
        return Retry(RetryReason.WAITING_FOR_SIGNATURES, f"waiting for signatures: {collected.reason}",
                     faulty=collected.faulty)

    async def _unpaid(self, record: MessageRecord) -> Drop | None:
        """The payment policy's refusal (relay/policy.py) as a dead letter, counted."""
        reason = await self.policy.refusal(record.decoded, record.source_tx, self.adapters.get(record.src_domain))
        if reason is None:
            return None
        self.metrics.refused_unpaid.labels(src_domain=str(record.src_domain)).inc()
        return Drop(RetryReason.REFUSED_UNPAID, reason)

    async def submit(self, record: MessageRecord) -> Outcome:
        destination = self._destination(record)
        assert destination is not None and record.signature is not None and record.epoch is not None
        # Cheap insurance against a crash after the previous submission: never pay for a
        # transaction the gateway would refuse as a replay.
        if await destination.is_delivered(record.message_id, record.decoded):
            return Confirmed(by="other")
        if record.reason_code is RetryReason.HANDLER_FAILED:
            # Delivered, but the receiver's handler failed: re-run it (no signature needed).
            try:
                tx = await destination.retry_failed(record.decoded)
            except Exception as exc:
                return Retry(RetryReason.HANDLER_FAILED, f"re-running the handler failed: {type(exc).__name__}: {exc}")
            return Submitted(tx, destination.name)
        waiting = await self._result_pending(record, destination)
        if waiting is not None:
            return waiting
        delivery = SignedDelivery(envelope=record.decoded, epoch=record.epoch, signature=record.signature)
        try:
            tx = await destination.submit(delivery)
        except Exception as exc:
            return Retry(RetryReason.SUBMIT_FAILED, f"{type(exc).__name__}: {exc}")
        return Submitted(tx, destination.name)

    async def _result_pending(self, record: MessageRecord, destination: ChainAdapter) -> Postpone | None:
        """A task board ignores an attestation for a result it has not recorded (and its gateway then
        counts the attestation as delivered), so an attestation goes only once its result is final
        there. Waiting for that does not use up retries."""
        if record.kind != MessageKind.PROOF_ATTESTATION or record.src_domain != COMMITTEE_DOMAIN:
            return None
        payload = record.decoded.payload
        try:
            if len(payload) == VERDICT_LEN:
                # v2: the requester's board keeps an early verdict, so waiting is an optimisation with a
                # limit, and only for the verdict to the requester's board (the result went there).
                result_id = ProofVerdict.decode(payload).result_id
                result = await self.store.get(result_id)
                if (result is None or result.dst_domain != record.dst_domain
                        or time.time() - record.observed_at > self.settings.order_wait):
                    return None
            else:
                result_id = ProofAttestation.decode(payload).result_id
        except TaskPayloadError:
            return None
        if await destination.is_delivered(result_id):
            return None
        return Postpone(RetryReason.AWAITING_RESULT,
                        f"waiting for its result 0x{result_id.hex()} to be delivered first", self.settings.order_poll)

    async def confirm(self, record: MessageRecord, in_batch: bool = False) -> Outcome:
        destination = self._destination(record)
        assert destination is not None and record.dest_tx is not None
        # A batch's transaction may deliver several messages: ask for this one's outcome in it.
        status = await (destination.delivery_status(record.dest_tx, message_id=record.message_id) if in_batch
                        else destination.delivery_status(record.dest_tx))
        if status.state is DeliveryState.CONFIRMED:
            return Confirmed(by="us")
        if status.state is DeliveryState.HANDLER_FAILED:
            # Recorded by the gateway but not handled: never "delivered". The submit step re-runs it.
            return Retry(RetryReason.HANDLER_FAILED,
                         f"the receiver's handler failed: {status.detail or 'no reason given'}; retrying it",
                         stage=Stage.READY)
        if status.state is DeliveryState.PENDING:
            return self._not_final(record, status)
        if await destination.is_delivered(record.message_id, record.decoded):
            return Confirmed(by="other")  # our transaction failed or vanished because another relayer's won
        if status.state is DeliveryState.REVERTED:
            return Retry(RetryReason.DELIVERY_REVERTED, f"delivery reverted: {status.detail}; re-preparing",
                         stage=Stage.OBSERVED)
        return Retry(RetryReason.DELIVERY_DROPPED, f"delivery dropped: {status.detail}; resubmitting",
                     stage=Stage.READY)

    def _not_final(self, record: MessageRecord, status: DeliveryStatus) -> Outcome:
        """A submitted delivery whose transaction is not final yet."""
        if record.submitted_at and time.time() - record.submitted_at > self.settings.submitted_timeout:
            return Retry(RetryReason.NOT_FINAL_IN_TIME,
                         f"not final after {self.settings.submitted_timeout:.0f}s: resubmitting", stage=Stage.READY)
        # Waiting for finality is not a failure: it does not use up the retry budget.
        return Postpone(RetryReason.AWAITING_FINALITY, f"pending: {status.detail}" if status.detail else "pending",
                        self._confirm_poll)

    def _group_submitted(self, records: list[MessageRecord], members: dict[bytes, BatchMember]
                         ) -> tuple[list[MessageRecord], list[Awaitable[None]]]:
        """Submitted batch members that share one delivery transaction (EVM deliverBatch) are checked
        together (`_confirm_shared_tx`); the others one by one."""
        singles: list[MessageRecord] = []
        by_tx: dict[tuple[int, str], list[MessageRecord]] = {}
        for record in records:
            if record.message_id in members and record.dest_tx and self._destination(record) is not None:
                by_tx.setdefault((record.dst_domain, record.dest_tx), []).append(record)
            else:
                singles.append(record)
        steps: list[Awaitable[None]] = []
        for group in by_tx.values():
            if len(group) == 1:
                singles.extend(group)
            else:
                steps.append(self._confirm_shared_tx(group))
        return singles, steps

    async def _confirm_shared_tx(self, group: list[MessageRecord]) -> None:
        """Confirm the members of a batch delivered by one transaction: the transaction is asked once;
        while it is not final (most checks) every member waits without asking again. Once it is
        final, each member's own outcome in it is asked (`confirm`), as for one member alone: a member
        is confirmed only when the final transaction delivered it (or the gateway has it from another)."""
        destination = self._destination(group[0])
        assert destination is not None and group[0].dest_tx is not None
        decided: list[tuple[MessageRecord, Outcome]] = []
        async with self._permits[Stage.SUBMITTED]:
            try:
                status = await destination.delivery_status(group[0].dest_tx)
            except Exception as exc:
                decided = [(r, Retry(RetryReason.STEP_FAILED, f"{type(exc).__name__}: {exc}")) for r in group]
            else:
                if status.state is DeliveryState.PENDING:
                    decided = [(r, self._not_final(r, status)) for r in group]
                else:
                    found = await asyncio.gather(*(self.confirm(r, in_batch=True) for r in group),
                                                 return_exceptions=True)
                    for record, outcome in zip(group, found):
                        if isinstance(outcome, BaseException):
                            if not isinstance(outcome, Exception):
                                raise outcome
                            outcome = Retry(RetryReason.STEP_FAILED, f"{type(outcome).__name__}: {outcome}")
                        decided.append((record, outcome))
        await self.apply_many(decided)

    # -- the one place outcomes take effect -------------------------------------------------------
    async def apply(self, record: MessageRecord, outcome: Outcome) -> None:
        """Record what a step decided: the store first (so a crash right after loses nothing), then
        metrics and logs."""
        await self.apply_many([(record, outcome)])

    async def apply_many(self, decided: list[tuple[MessageRecord, Outcome]]) -> None:
        """`apply` for many messages at once: their store writes in ONE transaction (joined with those
        of the other steps applying at the same moment: `_GroupCommit`), committed before any of
        their metrics, logs and updates."""
        if not decided:
            return
        now = time.time()
        writes: list[StepWrite] = []
        delays: list[float | None] = []
        for record, outcome in decided:
            msg_id = record.message_id.hex()
            for member, what in (outcome.faulty if isinstance(outcome, (Signed, Retry)) else {}).items():
                self.metrics.faulty_partials.labels(member=str(member)).inc()
                self.log.warning("faulty partial signature", member=member, reason=what, msg_id=msg_id)
            write, delay = self._write_for(record, outcome, now)
            writes.append(write)
            delays.append(delay)
        await self._writes.write(writes)
        self._moved_on += sum(isinstance(outcome, (Signed, Submitted)) for _, outcome in decided)
        for (record, outcome), delay in zip(decided, delays):
            self._applied(record, outcome, now, delay)

    def _write_for(self, record: MessageRecord, outcome: Outcome, now: float) -> tuple[StepWrite, float | None]:
        """The store write an outcome makes (with a retry's backoff delay; None: no retry)."""
        store, message_id = self.store, record.message_id
        match outcome:
            case Signed(epoch=epoch, signature=signature):
                return store.advance_write(message_id, Stage.READY, now=now, epoch=epoch, signature=signature), None
            case Submitted(tx=tx):
                return store.advance_write(message_id, Stage.SUBMITTED, now=now, dest_tx=tx,
                                           next_attempt_at=now + self.settings.confirm_poll), None
            case Confirmed():
                return store.advance_write(message_id, Stage.CONFIRMED, now=now), None
            case Postpone(reason=reason, detail=detail, delay=delay):
                return store.postpone_write(message_id, reason, detail, now + delay, now=now), None
            case Retry(reason=reason, detail=detail, stage=stage):
                if self.settings.backoff.exhausted(record.attempts):
                    return store.retry_write(message_id, reason, _exhausted(record, detail), float("inf"), now=now,
                                             stage=Stage.DEAD), None
                delay = self.settings.backoff.delay(record.attempts)
                return store.retry_write(message_id, reason, detail, now + delay, now=now, stage=stage), delay
            case Drop(reason=reason, detail=detail):
                return store.retry_write(message_id, reason, detail, float("inf"), now=now, stage=Stage.DEAD), None
        raise TypeError(f"not a step outcome: {outcome!r}")

    def _applied(self, record: MessageRecord, outcome: Outcome, now: float, delay: float | None) -> None:
        """Metrics, logs and updates of an outcome whose write is committed."""
        msg_id = record.message_id.hex()
        match outcome:
            case Signed(epoch=epoch):
                self.metrics.stage_latency.labels(stage="signed").observe(now - record.observed_at)
                self.log.info("signed", msg_id=msg_id, epoch=epoch)
                self._wake.set()
            case Submitted(tx=tx, chain=chain):
                self.metrics.stage_latency.labels(stage="submitted").observe(now - record.observed_at)
                self.log.info("submitted", msg_id=msg_id, chain=chain, tx=tx)
            case Confirmed(by=by):
                self.metrics.deliveries.labels(src_domain=str(record.src_domain), dst_domain=str(record.dst_domain),
                                               by=by).inc()
                self.metrics.stage_latency.labels(stage="confirmed").observe(now - record.observed_at)
                self.log.info("delivered", msg_id=msg_id, by=by, src=record.src_domain, dst=record.dst_domain)
            case Retry(reason=reason, detail=detail, stage=stage):
                if delay is None:  # retries exhausted: the dead letter
                    self._dead_letter(record, reason, _exhausted(record, detail))
                else:
                    stage_label = (stage or record.stage).value
                    self.metrics.retries.labels(stage=stage_label, reason=reason.value).inc()
                    self.log.info("retry scheduled", msg_id=msg_id, stage=stage_label, reason=reason.value,
                                  detail=detail, in_s=round(delay, 2), attempt=record.attempts + 1)
            case Drop(reason=reason, detail=detail):
                self._dead_letter(record, reason, detail)
        if not (isinstance(outcome, Postpone) and outcome.reason is record.reason_code):  # (only news)
            self.updates.publish(record.message_id)

    def _dead_letter(self, record: MessageRecord, reason: RetryReason, detail: str) -> None:
        self.metrics.dead_letters.labels(reason=reason.value).inc()
        self.log.error("dead letter", msg_id=record.message_id.hex(), reason=reason.value, detail=detail,
                       hint="fix the cause, then `relay retry <id>`")

    async def _dead(self, record: MessageRecord, reason: RetryReason, detail: str) -> None:
        await self.apply(record, Drop(reason, detail))


def _exhausted(record: MessageRecord, detail: str) -> str:
    return f"retries exhausted ({record.attempts + 1}); last: {detail}"


class _GroupCommit:
    """Group commit of step writes: the writes handed in while one transaction is being written (or
    in the same turn of the event loop) go together in the next one (`Store.write_steps`), instead of
    one transaction (one fsync on SQLite) per message. Each caller waits until its own writes are
    committed. If a joint transaction fails, each caller's writes are tried again on their own, so
    one bad write fails only its own caller."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[tuple[list[StepWrite], asyncio.Future[list[bool]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, writes: list[StepWrite]) -> list[bool]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[bool]] = loop.create_future()
        self._queue.append((writes, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        queued: list[tuple[list[StepWrite], asyncio.Future[list[bool]]]] = []
        try:
            await asyncio.sleep(0)  # the steps finishing in this turn of the loop join in
            while self._queue:
                queued, self._queue = self._queue, []
                try:
                    results = await self._store.write_steps([w for writes, _ in queued for w in writes])
                except Exception as exc:
                    if len(queued) == 1:
                        _settle(queued[0][1], exc)
                        continue
                    for writes, done in queued:  # alone: only the bad one fails
                        try:
                            _settle(done, await self._store.write_steps(writes))
                        except Exception as alone:
                            _settle(done, alone)
                    continue
                at = 0
                for writes, done in queued:
                    _settle(done, results[at:at + len(writes)])
                    at += len(writes)
        except BaseException:  # cancelled (the loop is closing): nobody waits for ever
            for _, done in [*queued, *self._queue]:
                done.cancel()
            self._queue = []
            raise


def _settle(done: "asyncio.Future[list[bool]]", result: "list[bool] | BaseException") -> None:
    if done.done():  # its caller was cancelled
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)
