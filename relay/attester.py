"""The attester daemon (`relay attester`): watches every configured chain ITSELF, signs a partial
only for an envelope it observed final on its source chain, and serves its partials over HTTP.

It never trusts the relayer's view of a chain: a relayer may ask it to look at a source
transaction (`POST /v1/observe`), but the attester reads that transaction from its own RPC
endpoints and applies its own finality rule before signing anything.

For AI tasks it also checks every final TASK_RESULT against the TASK_REQUEST it answers
(relay/tasks/attestation.py). Task protocol v1: only if the result holds up, it co-signs the derived
PROOF_ATTESTATION; a refusal is recorded with its reason and served instead of a partial. Task
protocol v2 (docs/TASKS.md "Verdict"): it signs the verdict, valid or refused with a reason, as two
envelopes (to the requester's board and to the serving board), at most one verdict per result, and
abstains when the fault is not the worker's (request not seen, the requester's input unreachable).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

from aiohttp import web

from attest.signing_log import (EquivocationError, ResultRecord, RootLimitError, SignedEntry, SigningLog,
                                SigningLogError)
from relay.batch import Batch, BatchError
from relay.interfaces import ChainAdapter, Observation
from relay.envelope import Envelope, EnvelopeError, message_digest
from relay.errors import ConfigError
from relay.lifecycle import keep_running, run_until_stopped
from relay.log import get_logger
from relay.protocol import MessageKind
from relay.tasks.attestation import (
    DATA_NOT_AVAILABLE,
    REQUEST_NOT_SEEN,
    AttestationError,
    Fetch,
    PayoutCheck,
    VerdictOutcome,
    attestation_for,
    check_result,
    check_result_v2,
    derive_attestation,
    http_fetch,
    nonzero_payout,
    result_version,
    verdicts_for,
)
from relay.tasks.executors import ExecutorRegistry
from relay.tasks.payloads import RefusalReason, TaskPayloadError, TaskResult, TaskResultV2, Verdict
from relay.tasks.proofs import ProofVerifierRegistry

log = get_logger("attester")

Signer = Callable[[bytes], bytes]  # digest -> partial signature (G1, 64 bytes)


class RateLimiter:
    """Sliding one-second window; keeps a noisy relayer from making us hammer our own RPC."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._hits: deque[float] = deque()

    def allow(self) -> bool:
        now = time.monotonic()
        while self._hits and now - self._hits[0] > 1.0:
            self._hits.popleft()
        if len(self._hits) >= self.per_second:
            return False
        self._hits.append(now)
        return True


def require_majority(t: int, n: int) -> None:
    """Task verdicts need t > n/2 (docs/TASKS.md, "Verdict"): otherwise a valid and a refused verdict
    on one result could both gather t signatures. Raises ConfigError saying what to change."""
    if 2 * t <= n:
        raise ConfigError(
            f"the committee's threshold is {t} of {n}: task verdicts need a majority (t > n/2, here at least "
            f"{n // 2 + 1}), or a valid and a refused verdict on one result could both be signed; re-deal the "
            "committee with a higher threshold")


MAX_ROOT_REOBSERVE = 8  # source transactions one root request may have an attester read again


class RootRefused(Exception):
    """This attester will not sign the batch root (yet): `status` is the HTTP answer (400 malformed,
    404 messages not seen final here, 409 a message conflicts with one signed for its slot, 429 a
    message is in the most signed roots a message may be in already)."""

    def __init__(self, status: int, message: str, missing: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.missing = missing or []


class Attester:
    def __init__(
        self,
        index: int,
        epoch: int,
        sign: Signer,
        adapters: dict[int, ChainAdapter],
        signing_log: SigningLog,
        observe_rate: float = 20.0,
        *,
        executors: ExecutorRegistry | None = None,
        verifiers: ProofVerifierRegistry | None = None,
        fetch: Fetch = http_fetch,
        check_concurrency: int = 2,
        fetch_retry_delays: tuple[float, ...] = (2.0, 8.0),
        threshold: tuple[int, int] | None = None,
        payout_check: PayoutCheck = nonzero_payout,
    ) -> None:
        if threshold is not None:
            require_majority(*threshold)
        self.index = index
        self.epoch = epoch
        self._sign = sign
        self.adapters = adapters
        self.signing_log = signing_log
        self._observe_limiter = RateLimiter(observe_rate)
        self.log = log.bind(member=index)
        self._executors = executors
        self._verifiers = verifiers
        self._fetch = fetch
        # Re-execution can take seconds and CPU: few at a time, and never on the watch loop.
        self._check_slots = asyncio.Semaphore(check_concurrency)
        self._checking: dict[bytes, asyncio.Task[None]] = {}
        self._fetch_retry_delays = fetch_retry_delays
        self._payout_check = payout_check

    async def run(self, stop: asyncio.Event) -> None:
        for record in self.signing_log.pending_results():  # checks a previous run did not finish
            self._schedule_check(record.result_id)
        try:
            await run_until_stopped(stop, *(
                keep_running(f"watch {a.name}", lambda a=a: self._watch(a), self.log) for a in self.adapters.values()))
        finally:
            for task in list(self._checking.values()):
                task.cancel()

    async def _watch(self, adapter: ChainAdapter) -> None:
        name = f"watch:{adapter.domain}"
        # The signing log commits a burst's records and cursor in one transaction (group commit): the
        # cursor is written after the records it covers and never becomes durable without them.
        generation = self.signing_log.generation
        cursor = self.signing_log.get_cursor(name)
        self.log.info("watching", chain=adapter.name, cursor=cursor)
        async for observation in adapter.watch(cursor):
            self.attest(observation, adapter)
            if self.signing_log.generation != generation:
                # An uncommitted group was rolled back (a failed commit): records of this watcher may
                # be gone; moving the cursor on would skip them. keep_running starts it again.
                raise SigningLogError("the signing log lost uncommitted writes; watching again from the last "
                                      "durable cursor")
            self.signing_log.set_cursor(name, observation.cursor)

    def attest(self, observation: Observation, adapter: ChainAdapter) -> SignedEntry | None:
        env = observation.envelope
        if env.src_domain != adapter.domain:
            # The gateway stamps its own domain; anything else is forged or misconfigured.
            self.log.error("refused: wrong source domain", chain=adapter.name, claimed=env.src_domain,
                           msg_id=env.message_id.hex())
            return None
        if env.dst_domain not in self.adapters:
            self.log.warning("refused: unknown destination", dst=env.dst_domain, msg_id=env.message_id.hex())
            return None
        message_id = env.message_id
        try:
            existing = self.signing_log.check(env.src_domain, env.nonce, message_id, self.epoch)
        except EquivocationError as exc:
            self.log.critical("refused to equivocate", reason=str(exc))
            return None
        if existing is not None:
            self._task_hook(observation)
            return existing
        # Seen final: the message takes its (source, nonce, epoch) slot now (equivocation is refused
        # from here on), but its partial is signed on first request (signed_entry): with batching on,
        # the relayer asks for root signatures and most messages never need one of their own.
        entry = self.signing_log.record(SignedEntry(
            src_domain=env.src_domain, nonce=env.nonce, message_id=message_id, epoch=self.epoch,
            partial=b"", source_tx=observation.source_tx, signed_at=time.time(),
        ))
        self.log.info("seen final", msg_id=message_id.hex(), src=env.src_domain, nonce=env.nonce,
                      tx=observation.source_tx)
        self._task_hook(observation)
        return entry

    def signed_entry(self, entry: SignedEntry) -> SignedEntry:
        """`entry` with its partial: a message recorded as seen final (attest) is signed here, on
        first request, and the partial written to the log (served only after flush())."""
        if entry.partial:
            return entry
        return self.signing_log.set_partial(entry, self._sign(message_digest(entry.epoch, entry.message_id)))

    # -- proof attestations ------------------------------------------------------------------
    def _task_hook(self, observation: Observation) -> None:
        env = observation.envelope
        match env.kind:
            case MessageKind.TASK_REQUEST:
                if self.signing_log.remember_request(env.message_id, env.encode(), observation.source_tx):
                    # A result seen before its request (watchers of two chains run apart) gets a second look.
                    for record in self.signing_log.results_for_request(env.message_id):
                        if record.status in ("refused", "abstained") and record.reason.startswith(REQUEST_NOT_SEEN):
                            self.signing_log.set_result_status(record.result_id, "pending", "", record.method)
                            self._schedule_check(record.result_id)
            case MessageKind.TASK_RESULT:
                version = result_version(env)
                try:
                    codec = TaskResultV2 if version == 2 else TaskResult
                    request_id = codec.decode(env.payload).request_id
                except TaskPayloadError:
                    request_id = bytes(32)  # recorded anyway, so the refusal is visible
                attestation_id = None
                if observation.block_time is not None and version == 1:
                    # v2: the verdict's ids are known once the verdict is (they differ by verdict).
                    try:
                        attestation_id = attestation_for(env, observation.block_time).message_id
                    except AttestationError:
                        pass
                record = self.signing_log.remember_result(env.message_id, request_id, env.encode(), observation.source_tx,
                                                          observation.block_time, attestation_id, version)
                if record.status == "pending":
                    self._schedule_check(record.result_id)

    def _schedule_check(self, result_id: bytes) -> None:
        if result_id in self._checking:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._check(result_id))
        except RuntimeError:  # no loop (a synchronous caller): run() picks pending results up
            return
        self._checking[result_id] = task
        task.add_done_callback(lambda _t, r=result_id: self._checking.pop(r, None))

    async def wait_checks(self) -> None:
        """Until every scheduled result check has finished (tests, shutdown)."""
        while self._checking:
            await asyncio.gather(*list(self._checking.values()), return_exceptions=True)

    def _registries(self) -> tuple[ExecutorRegistry, ProofVerifierRegistry]:
        if self._executors is None:
            self._executors = ExecutorRegistry.load()
        if self._verifiers is None:
            self._verifiers = ProofVerifierRegistry.load(self._executors)
        return self._executors, self._verifiers

    def _refuse_result(self, record: ResultRecord, reason: str, method: int | None) -> None:
        self.signing_log.set_result_status(record.result_id, "refused", reason, method)
        self.log.warning("refused to attest", result_id=record.result_id.hex(), reason=reason,
                         attestation_id=record.attestation_id.hex() if record.attestation_id else None)

    async def _check(self, result_id: bytes) -> None:
        record = self.signing_log.task_result(result_id)
        if record is None or record.status != "pending":
            return
        if record.version == 2:
            await self._check_v2(record)
            return
        result_env = Envelope.decode(record.envelope)
        if record.block_time is None or record.attestation_id is None:
            self._refuse_result(record, "no attestation can be derived: the result payload does not decode or "
                                        "the source chain reported no block time for it", None)
            return
        raw_request = self.signing_log.request_envelope(record.request_id)
        request_env = Envelope.decode(raw_request) if raw_request is not None else None
        executors, verifiers = self._registries()
        try:
            for delay in (*self._fetch_retry_delays, None):
                async with self._check_slots:  # not held while waiting to retry
                    verdict = await check_result(request_env, result_env, executors, verifiers, self._fetch)
                if verdict.ok or delay is None or not verdict.reason.startswith(DATA_NOT_AVAILABLE):
                    break
                # A URI that does not answer may be a passing outage: try again before refusing.
                self.log.info("task data not available; retrying", result_id=result_id.hex(),
                              reason=verdict.reason, in_s=delay)
                await asyncio.sleep(delay)
        except Exception:
            # A bug, not a verdict: leave it pending (the next start checks it again).
            self.log.exception("result check crashed", result_id=result_id.hex())
            return
        if not verdict.ok:
            self._refuse_result(record, verdict.reason, int(verdict.method))
            return
        attestation = derive_attestation(result_env, record.block_time, verdict.method)
        if attestation.message_id != record.attestation_id:
            self._refuse_result(record, f"internal: derived attestation 0x{attestation.message_id.hex()} differs "
                                        f"from the one announced (0x{record.attestation_id.hex()})",
                                int(verdict.method))
            return
        partial = self._sign(attestation.digest(self.epoch))
        try:
            self.signing_log.record_attestation(result_id, SignedEntry(
                src_domain=attestation.src_domain, nonce=attestation.nonce, message_id=attestation.message_id,
                epoch=self.epoch, partial=partial, source_tx=record.source_tx, signed_at=time.time()))
        except EquivocationError as exc:
            self.log.critical("refused to equivocate", reason=str(exc))
            self._refuse_result(record, str(exc), int(verdict.method))
            return
        self.signing_log.set_result_status(result_id, "attested", verdict.reason, int(verdict.method))
        self.log.info("attested result", result_id=result_id.hex(), attestation_id=attestation.message_id.hex(),
                      method=int(verdict.method))

    # -- task protocol v2: verdicts -----------------------------------------------------------
    def _abstain(self, record: ResultRecord, reason: str, method: int | None) -> None:
        self.signing_log.set_result_status(record.result_id, "abstained", reason, method)
        self.log.info("abstained: no verdict", result_id=record.result_id.hex(), reason=reason)

    async def _check_v2(self, record: ResultRecord) -> None:
        result_id = record.result_id
        result_env = Envelope.decode(record.envelope)
        raw_request = self.signing_log.request_envelope(record.request_id)
        request_env = Envelope.decode(raw_request) if raw_request is not None else None
        executors, verifiers = self._registries()
        try:
            delays = (*self._fetch_retry_delays, None)
            for delay in delays:
                async with self._check_slots:  # not held while waiting to retry
                    check = await check_result_v2(request_env, result_env, executors, verifiers, self._fetch,
                                                  payout_check=self._payout_check, final_attempt=delay is None)
                if (check.outcome is not VerdictOutcome.ABSTAIN or delay is None
                        or not check.reason.startswith(DATA_NOT_AVAILABLE)):
                    break
                # A URI that does not answer may be a passing outage: try again before deciding.
                self.log.info("task data not available; retrying", result_id=result_id.hex(), reason=check.reason,
                              in_s=delay)
                await asyncio.sleep(delay)
        except Exception:
            # A bug, not a verdict: leave it pending (the next start checks it again).
            self.log.exception("result check crashed", result_id=result_id.hex())
            return
        if check.outcome is VerdictOutcome.ABSTAIN:
            self._abstain(record, check.reason, int(check.method))
            return
        if record.block_time is None:
            self._abstain(record, "no verdict: the source chain reported no block time for the result", None)
            return
        try:
            verdicts = verdicts_for(result_env, record.block_time, check.refusal)
        except AttestationError as exc:
            self._abstain(record, str(exc), int(check.method))
            return
        payload = verdicts.requester.payload
        try:
            for envelope in verdicts:  # the requester's board, then the serving board
                self.signing_log.record_verdict(result_id, envelope.dst_domain, payload, SignedEntry(
                    src_domain=envelope.src_domain, nonce=envelope.nonce, message_id=envelope.message_id,
                    epoch=self.epoch, partial=self._sign(envelope.digest(self.epoch)), source_tx=record.source_tx,
                    signed_at=time.time()))
        except EquivocationError as exc:
            self.log.critical("refused to equivocate", reason=str(exc))
            self._abstain(record, str(exc), int(check.method))
            return
        verdict = Verdict.VALID if check.refusal is None else Verdict.REFUSED
        refusal = check.refusal or RefusalReason.NONE
        self.signing_log.set_verdict(result_id, int(verdict), int(refusal), payload, verdicts.requester.message_id,
                                     verdicts.serving.message_id, check.reason, int(check.method))
        (self.log.info if verdict is Verdict.VALID else self.log.warning)(
            "verdict signed", result_id=result_id.hex(), verdict=verdict.name.lower(), refusal=refusal.name,
            reason=check.reason, requester_verdict=verdicts.requester.message_id.hex(),
            serving_verdict=verdicts.serving.message_id.hex())

    # -- batch roots (docs/PROTOCOL.md "Batch attestations", POST /v1/roots) -----------------------
    def _unsigned_in(self, batch: Batch) -> list[bytes]:
        """Ids of the batch's messages this attester has not signed (not seen final); raises
        RootRefused(409) for one whose (source, nonce) slot was signed for another message."""
        missing = []
        for envelope in batch.envelopes:
            entry = self.signing_log.by_nonce(envelope.src_domain, envelope.nonce, self.epoch)
            if entry is None:
                missing.append(envelope.message_id)
            elif entry.message_id != envelope.message_id:
                raise RootRefused(409, f"source {envelope.src_domain} nonce {envelope.nonce} was signed for message "
                                       f"0x{entry.message_id.hex()}, not 0x{envelope.message_id.hex()}: this batch "
                                       "holds an envelope that was never emitted")
        return missing

    async def sign_root(self, src_domain: int, dst_domain: int, envelopes: list[Envelope],
                        source_txs: list[str] | None = None) -> tuple[Batch, bytes]:
        """The partial signature of the batch's root digest, only when this attester has itself seen
        every message of it final on the source (the rule for single messages: each is then in the
        signing log, holding its own (source, nonce, epoch) slot). Messages not seen yet are looked
        up once by their source transactions (read through this attester's own endpoints, at most
        MAX_ROOT_REOBSERVE, within the observe rate limit). Raises RootRefused saying why not."""
        try:
            batch = Batch.of(envelopes)
        except BatchError as exc:
            raise RootRefused(400, f"not a batch: {exc}") from None
        if (batch.src_domain, batch.dst_domain) != (src_domain, dst_domain):
            raise RootRefused(400, f"the envelopes are of lane {batch.src_domain}->{batch.dst_domain}, the request "
                                   f"names {src_domain}->{dst_domain}")
        if src_domain not in self.adapters or dst_domain not in self.adapters:
            raise RootRefused(400, f"this attester does not watch lane {src_domain}->{dst_domain}: both chains must be "
                                   "in its config")
        missing = self._unsigned_in(batch)
        if missing and source_txs:
            by_id = dict(zip(batch.message_ids, source_txs))
            txs = list(dict.fromkeys(by_id[m] for m in missing if by_id.get(m)))[:MAX_ROOT_REOBSERVE]
            for tx in txs:
                if not self._observe_limiter.allow():
                    break
                try:
                    await self.observe_tx(src_domain, tx)
                except Exception as exc:  # noqa: BLE001 - the refusal below says what is missing
                    self.log.warning("re-observation for a root failed", src=src_domain, tx=tx, error=str(exc))
            missing = self._unsigned_in(batch)
        if missing:
            raise RootRefused(404, f"not signed: this attester has not observed {len(missing)} of the batch's "
                                   f"{len(batch.envelopes)} messages final on its source chain", missing)
        partial = self.signing_log.root_partial(batch.root, self.epoch, src_domain, dst_domain)
        if partial is not None:
            return batch, partial
        # Anyone may ask for roots over any subset or order of the messages seen final: each message
        # is in a bounded number of signed roots (the log stays bounded by the messages sent), and a
        # request over the bound is refused before any signing work.
        if over := self.signing_log.over_root_limit(batch.message_ids, self.epoch):
            raise RootRefused(429, f"{len(over)} of the batch's messages are in the most signed roots a message may "
                                   "be in already; deliver them with a root signed before, or singly")
        try:
            partial = self.signing_log.record_root(batch.root, self.epoch, src_domain, dst_domain, batch.message_ids,
                                                   self._sign(batch.digest(self.epoch)))
        except RootLimitError as exc:
            raise RootRefused(429, str(exc)) from None
        self.log.info("signed root", root=batch.root.hex(), src=src_domain, dst=dst_domain, count=len(envelopes))
        return batch, partial

    async def observe_tx(self, src_domain: int, source_tx: str) -> list[SignedEntry]:
        adapter = self.adapters.get(src_domain)
        if adapter is None:
            raise web.HTTPBadRequest(text=f'{{"error": "this attester does not watch domain {src_domain}"}}',
                                     content_type="application/json")
        entries = []
        for observation in await adapter.reobserve(source_tx):
            entry = self.attest(observation, adapter)
            if entry is not None:
                entries.append(entry)
        return entries

    def build_app(self) -> web.Application:
        routes = web.RouteTableDef()

        def hex_or_none(value: bytes | None) -> str | None:
            return "0x" + value.hex() if value else None

        def result_json(record: ResultRecord) -> dict:
            body = {
                "result_id": "0x" + record.result_id.hex(), "request_id": "0x" + record.request_id.hex(),
                "version": record.version, "status": record.status, "reason": record.reason, "method": record.method,
                "attestation_id": hex_or_none(record.attestation_id),
            }
            if record.version == 2:
                # Both verdict envelopes (to the requester's board, to the serving board) and the verdict.
                body["attestation_ids"] = {"requester": hex_or_none(record.attestation_id),
                                           "serving": hex_or_none(record.serving_attestation_id)}
                body["verdict"] = {1: "valid", 2: "refused"}.get(record.verdict or 0)
                body["refusal_reason"] = (RefusalReason(record.refusal).name.lower()
                                          if record.verdict == Verdict.REFUSED and record.refusal is not None else None)
                body["verdict_payload"] = hex_or_none(record.verdict_payload)
            return body

        def partial_json(entry: SignedEntry) -> dict:
            return {"member": self.index, "epoch": entry.epoch, "message_id": "0x" + entry.message_id.hex(),
                    "signature": "0x" + entry.partial.hex()}

        @routes.get("/health")
        async def health(request: web.Request) -> web.Response:
            return web.json_response({"ok": True, "member": self.index, "epoch": self.epoch})

        @routes.get("/v1/partials/{message_id}")
        async def partial(request: web.Request) -> web.Response:
            try:
                message_id = bytes.fromhex(request.match_info["message_id"].removeprefix("0x"))
                assert len(message_id) == 32
            except (ValueError, AssertionError):
                return web.json_response({"error": "message id must be 32 bytes of hex"}, status=400)
            entry = self.signing_log.by_message(message_id, self.epoch)
            if entry is None:
                checked = self.signing_log.task_result_by_attestation(message_id)
                if checked is not None and checked.status == "refused":
                    # Final for this attester: the relayer records the reason instead of waiting.
                    return web.json_response({"error": f"refused: {checked.reason}",
                                              "result_id": "0x" + checked.result_id.hex()}, status=403)
                if checked is not None:
                    return web.json_response({"error": "not signed yet: the result is still being checked"},
                                             status=404)
                return web.json_response(
                    {"error": "not signed: this attester has not observed the message final on its source chain"},
                    status=404)
            return web.json_response(partial_json(self.signed_entry(entry)))

        @routes.get("/v1/task-results/{result_id}")
        async def task_result(request: web.Request) -> web.Response:
            try:
                result_id = bytes.fromhex(request.match_info["result_id"].removeprefix("0x"))
                assert len(result_id) == 32
            except (ValueError, AssertionError):
                return web.json_response({"error": "result id must be 32 bytes of hex"}, status=400)
            record = self.signing_log.task_result(result_id)
            if record is None:
                return web.json_response(
                    {"error": "unknown result: this attester has not observed that TASK_RESULT final"}, status=404)
            return web.json_response(result_json(record))

        @routes.post("/v1/observe")
        async def observe(request: web.Request) -> web.Response:
            if not self._observe_limiter.allow():
                return web.json_response({"error": "too many observe requests; retry later"}, status=429)
            try:
                body = await request.json()
                src_domain, source_tx = int(body["src_domain"]), str(body["source_tx"])
            # LookupError: an unknown charset or a missing key; RecursionError: JSON nested too deep;
            # OverflowError: int(Infinity).
            except (ValueError, TypeError, LookupError, RecursionError, OverflowError):
                return web.json_response({"error": 'body must be {"src_domain": int, "source_tx": str}'}, status=400)
            try:
                entries = await self.observe_tx(src_domain, source_tx)
            except web.HTTPException:
                raise
            except Exception as exc:
                self.log.warning("re-observation failed", src=src_domain, tx=source_tx, error=str(exc))
                return web.json_response({"error": f"could not read the transaction: {exc}"}, status=503)
            return web.json_response({"signed": [partial_json(self.signed_entry(e)) for e in entries]})

        @routes.post("/v1/roots")
        async def roots(request: web.Request) -> web.Response:
            usage = ('body must be {"src_domain": int, "dst_domain": int, "envelopes": [hex, ...], '
                     '"source_txs": [str, ...] (optional, one per envelope)}')
            try:
                body = await request.json()
                src_domain, dst_domain = int(body["src_domain"]), int(body["dst_domain"])
                raw = body["envelopes"]
                txs = body.get("source_txs") or []
                if not isinstance(raw, list) or not isinstance(txs, list) or (txs and len(txs) != len(raw)):
                    raise TypeError("envelopes and source_txs must be lists of one length")
                envelopes = [Envelope.decode(bytes.fromhex(str(e).removeprefix("0x"))) for e in raw]
                source_txs = [str(t) for t in txs]
            except EnvelopeError as exc:
                return web.json_response({"error": f"an envelope does not decode: {exc}"}, status=400)
            except (ValueError, TypeError, LookupError, RecursionError, OverflowError, AttributeError):
                return web.json_response({"error": usage}, status=400)
            try:
                batch, signature = await self.sign_root(src_domain, dst_domain, envelopes, source_txs)
            except RootRefused as exc:
                answer: dict = {"error": str(exc)}
                if exc.missing:
                    answer["missing"] = ["0x" + m.hex() for m in exc.missing]
                return web.json_response(answer, status=exc.status)
            return web.json_response({"member": self.index, "epoch": self.epoch, "root": "0x" + batch.root.hex(),
                                      "leaf_count": len(batch.envelopes), "signature": "0x" + signature.hex()})

        @web.middleware
        async def durable_first(request: web.Request, handler: Callable) -> web.StreamResponse:
            # Nothing signed leaves before it is durable: the signing log groups its commits, so
            # every answer (partials, roots, task decisions, and routes added to this app later)
            # commits the pending writes first. A failed commit answers 500, never the signature.
            response = await handler(request)
            self.signing_log.flush()
            return response

        async def durable_before_sending(request: web.Request, response: web.StreamResponse) -> None:
            # The backstop for a response prepared (streamed) inside a handler: before its first byte.
            self.signing_log.flush()

        # Root requests carry up to 64 envelopes (hex): the largest is ~77 KiB.
        app = web.Application(client_max_size=128 * 1024, middlewares=[durable_first])
        app.on_response_prepare.append(durable_before_sending)
        app.add_routes(routes)
        return app
