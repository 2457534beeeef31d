"""The relayer's delivery pipeline: every message is a pending operation

    observed --prepare--> ready --submit--> submitted --confirm--> confirmed
        ^                   ^                  |
        +---- re-prepare ---+---- resubmit ----+      (retries exhausted: dead, retryable)

with its stage, last reason and next attempt persisted in the store, so a restarted relayer goes on
where it stopped. Submission is at-least-once; the destination gateway refuses a message id it has
already accepted, so acceptance is exactly-once, also with several relayers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from relay.backoff import Backoff
from relay.interfaces import ChainAdapter, DeliveryState, SignedDelivery
from relay.envelope import Envelope
from relay.lifecycle import keep_running, run_until_stopped
from relay.log import get_logger
from relay.metrics import RelayerMetrics
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.store import MessageRecord, Stage, Store
from relay.tasks.attestation import AttestationError, attestation_for
from relay.tasks.payloads import ProofAttestation, TaskPayloadError

log = get_logger("relayer")


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


@dataclass
class PipelineSettings:
    backoff: Backoff = field(default_factory=Backoff)
    confirm_poll: float = 0.25  # seconds between confirmation checks of a submitted delivery
    submitted_timeout: float = 120.0  # a delivery not final by then is checked and resubmitted
    concurrency: int = 16
    gap_check_interval: float = 5.0
    idle_wait: float = 1.0
    order_poll: float = 0.5  # seconds between checks whether an attestation's result has landed


class Relayer:
    def __init__(
        self,
        store: Store,
        adapters: dict[int, ChainAdapter],
        signatures: SignatureSource,
        settings: PipelineSettings | None = None,
        metrics: RelayerMetrics | None = None,
        name: str = "relayer",
    ) -> None:
        self.store = store
        self.adapters = adapters
        self.signatures = signatures
        self.settings = settings or PipelineSettings()
        self.metrics = metrics or RelayerMetrics()
        self.name = name
        self._wake = asyncio.Event()
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        self.log = log.bind(relayer=name)

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await run_until_stopped(
            stop,
            *(keep_running(f"watch {a.name}", lambda a=a: self._watch(a), self.log) for a in self.adapters.values()),
            self._process_forever(stop),
            self._repair_gaps_forever(stop),
        )

    async def _watch(self, adapter: ChainAdapter) -> None:
        cursor_name = f"watch:{adapter.domain}"
        cursor = await self.store.get_cursor(cursor_name)
        self.log.info("watching", chain=adapter.name, domain=adapter.domain, cursor=cursor)
        async for observation in adapter.watch(cursor):
            await self.observe(observation.envelope, observation.source_tx, observation.block_time)
            await self.store.set_cursor(cursor_name, observation.cursor)

    def wake(self) -> None:
        self._wake.set()

    async def observe(self, envelope: Envelope, source_tx: str, block_time: int | None = None) -> None:
        if await self.store.add_observed(envelope, source_tx):
            self.log.info("observed", msg_id=envelope.message_id.hex(), src=envelope.src_domain,
                          dst=envelope.dst_domain, nonce=envelope.nonce, tx=source_tx)
            self._wake.set()
        if envelope.kind == MessageKind.TASK_RESULT:
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
            self._wake.set()

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
            try:
                await self.process_due()
            except Exception:  # a bug or a store error must not stop the relayer silently
                self.log.exception("processing round failed")
            await self.metrics_refresh()
            next_due = await self.store.next_due_at()
            wait = self.settings.idle_wait if next_due is None else max(0.0, min(self.settings.idle_wait, next_due - time.time()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def metrics_refresh(self) -> None:
        self.metrics.set_queue(await self.store.counts())
        for adapter in self.adapters.values():
            for endpoint in adapter.health():
                self.metrics.rpc_errors.labels(chain=adapter.name, endpoint=endpoint.url).set(endpoint.total_errors)
                self.metrics.rpc_healthy.labels(chain=adapter.name, endpoint=endpoint.url).set(int(endpoint.healthy))

    async def process_due(self) -> int:
        """One pass over every due operation of every active stage."""
        handled = 0
        for stage, step in ((Stage.OBSERVED, self._prepare), (Stage.READY, self._submit), (Stage.SUBMITTED, self._confirm)):
            records = await self.store.due(stage)
            handled += len(records)
            await asyncio.gather(*(self._guarded(step, r) for r in records))
        return handled

    async def _guarded(self, step, record: MessageRecord) -> None:
        async with self._semaphore:
            try:
                await step(record)
            except Exception as exc:
                await self._retry(record, f"{type(exc).__name__}: {exc}")

    # -- stages ----------------------------------------------------------------------------
    def _destination(self, record: MessageRecord) -> ChainAdapter | None:
        return self.adapters.get(record.dst_domain)

    async def _prepare(self, record: MessageRecord) -> None:
        destination = self._destination(record)
        if destination is None:
            await self._dead(record, f"no adapter for destination domain {record.dst_domain}: add the chain to the config")
            return
        if await destination.is_delivered(record.message_id):
            await self._confirmed(record, by="other")
            return
        collected = await self.signatures.collect(record.decoded, record.source_tx)
        for member, what in collected.faulty.items():
            self.metrics.faulty_partials.labels(member=str(member)).inc()
            self.log.warning("faulty partial signature", member=member, reason=what, msg_id=record.message_id.hex())
        if collected.signature is None:
            if collected.refused:
                # Kept retrying (a member may still be re-executing), but the reasons are what
                # `relay status` and the dead letter show.
                refusals = "; ".join(f"refused by member {i}: {why}" for i, why in sorted(collected.refused.items()))
                await self._retry(record, f"{refusals} ({collected.reason})")
            else:
                await self._retry(record, f"waiting for signatures: {collected.reason}")
            return
        await self.store.advance(record.message_id, Stage.READY, epoch=collected.epoch, signature=collected.signature)
        self.metrics.stage_latency.labels(stage="signed").observe(time.time() - record.observed_at)
        self.log.info("signed", msg_id=record.message_id.hex(), epoch=collected.epoch)
        self._wake.set()

    async def _submit(self, record: MessageRecord) -> None:
        destination = self._destination(record)
        assert destination is not None and record.signature is not None and record.epoch is not None
        # Cheap insurance against a crash after the previous submission: never pay for a
        # transaction the gateway would refuse as a replay.
        if await destination.is_delivered(record.message_id):
            await self._confirmed(record, by="other")
            return
        if not await self._result_landed(record, destination):
            return
        delivery = SignedDelivery(envelope=record.decoded, epoch=record.epoch, signature=record.signature)
        tx = await destination.submit(delivery)
        await self.store.advance(record.message_id, Stage.SUBMITTED, dest_tx=tx,
                                 next_attempt_at=time.time() + self.settings.confirm_poll)
        self.metrics.stage_latency.labels(stage="submitted").observe(time.time() - record.observed_at)
        self.log.info("submitted", msg_id=record.message_id.hex(), chain=destination.name, tx=tx)

    async def _result_landed(self, record: MessageRecord, destination: ChainAdapter) -> bool:
        """A task board ignores an attestation for a result it has not recorded (and its gateway then
        counts the attestation as delivered), so an attestation goes only once its result is final
        there. Waiting for that does not use up retries."""
        if record.kind != MessageKind.PROOF_ATTESTATION or record.src_domain != COMMITTEE_DOMAIN:
            return True
        try:
            result_id = ProofAttestation.decode(record.decoded.payload).result_id
        except TaskPayloadError:
            return True
        if await destination.is_delivered(result_id):
            return True
        await self.store.postpone(record.message_id, f"waiting for its result 0x{result_id.hex()} to be delivered first",
                                  time.time() + self.settings.order_poll)
        return False

    async def _confirm(self, record: MessageRecord) -> None:
        destination = self._destination(record)
        assert destination is not None and record.dest_tx is not None
        status = await destination.delivery_status(record.dest_tx)
        if status.state is DeliveryState.CONFIRMED:
            await self._confirmed(record, by="us")
        elif status.state is DeliveryState.PENDING:
            if record.submitted_at and time.time() - record.submitted_at > self.settings.submitted_timeout:
                await self._retry(record, f"not final after {self.settings.submitted_timeout:.0f}s: resubmitting",
                                  stage=Stage.READY)
            else:
                # Waiting for finality is not a failure: it does not use up the retry budget.
                await self.store.postpone(record.message_id, f"pending: {status.detail}" if status.detail else "pending",
                                          time.time() + self.settings.confirm_poll)
        elif await destination.is_delivered(record.message_id):
            # Our transaction failed or vanished because another relayer's won.
            await self._confirmed(record, by="other")
        elif status.state is DeliveryState.REVERTED:
            await self._retry(record, f"delivery reverted: {status.detail}; re-preparing", stage=Stage.OBSERVED)
        else:
            await self._retry(record, f"delivery dropped: {status.detail}; resubmitting", stage=Stage.READY)

    # -- outcomes --------------------------------------------------------------------------
    async def _confirmed(self, record: MessageRecord, by: str) -> None:
        await self.store.advance(record.message_id, Stage.CONFIRMED)
        self.metrics.deliveries.labels(src_domain=str(record.src_domain), dst_domain=str(record.dst_domain), by=by).inc()
        self.metrics.stage_latency.labels(stage="confirmed").observe(time.time() - record.observed_at)
        self.log.info("delivered", msg_id=record.message_id.hex(), by=by, src=record.src_domain, dst=record.dst_domain)

    async def _retry(self, record: MessageRecord, reason: str, stage: Stage | None = None) -> None:
        backoff = self.settings.backoff
        if backoff.exhausted(record.attempts):
            await self._dead(record, f"retries exhausted ({record.attempts + 1}); last: {reason}")
            return
        delay = backoff.delay(record.attempts)
        await self.store.retry_later(record.message_id, reason, time.time() + delay, stage=stage)
        self.metrics.retries.labels(stage=(stage or record.stage).value, reason=reason.split(":", 1)[0][:48]).inc()
        self.log.info("retry scheduled", msg_id=record.message_id.hex(), stage=(stage or record.stage).value,
                      reason=reason, in_s=round(delay, 2), attempt=record.attempts + 1)

    async def _dead(self, record: MessageRecord, reason: str) -> None:
        await self.store.retry_later(record.message_id, reason, float("inf"), stage=Stage.DEAD)
        self.log.error("dead letter", msg_id=record.message_id.hex(), reason=reason,
                       hint="fix the cause, then `relay retry <id>`")
