"""The on-chain pusher: follows committee-signed reports and puts them on each target chain when the
push rule (deviation or heartbeat, docs/FEEDS.md "On-chain push rule") says so.

A target is anything with `name`, `async push(signed) -> tx id | FeedNotNewer` and
`async latest(feed_id) -> report-like | None` (adapters.evm.feeds.EvmFeedTarget,
adapters.solana.feeds.SolanaFeedTarget). `push` raises on refusal; an exception whose `retryable`
attribute is False (a report the chain will never accept) is not retried.

Reports signed together (version 2: one committee signature over a feed root, docs/FEEDS.md "One
signature per round") that are due on a target at the same time go on-chain in one update through
the target's `push_root` (EVM FeedStore.updateFeeds; Solana UpdateFeeds, or VerifyFeedRoot +
UpdateFeedsWithProofs when one transaction is too small); a feed the chain already holds a round as
new of comes back as not-newer without failing the others. A target without `push_root`, a v1
report, or a report alone gets `push` as before.

Each target has its own worker and, per feed, only the newest report waiting: a slow or failing
chain never holds the others back, and a report superseded while it was being retried is dropped
for the newer one. What was last pushed is read from the chain at start, so a restarted pusher
applies the heartbeat from the real on-chain state.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import aiohttp

from relay.aio import wait_event, within
from relay.backoff import Backoff
from relay.feeds.aggregate import PushDecision, PushPolicy
from relay.feeds.client import FeedsClient
from relay.feeds.report import FeedError, FeedReport, ReportError
from relay.feeds.signed import SignedReport
from relay.feeds.sse import SseError, read_events
from relay.interfaces import FeedNotNewer, FeedTarget
from relay.log import get_logger

log = get_logger("feeds.push")

Clock = Callable[[], float]  # unix seconds


class PushError(FeedError):
    """The pusher cannot run (no targets, no feeds, a stream that is not a feed server)."""


def as_report(value: Any) -> FeedReport | Any | None:
    """The report inside what a target's `latest` returns (SignedReport and feed accounts carry one)."""
    if value is None:
        return None
    return getattr(value, "report", value)


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """One decision of the pusher, as logged and kept in `Pusher.history`."""

    target: str
    feed_id: str
    round: int
    pushed: bool
    reason: str
    tx: str | None = None
    attempts: int = 0


@dataclass
class _TargetState:
    target: FeedTarget
    pending: dict[str, SignedReport] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last: dict[str, Any] = field(default_factory=dict)  # feed id -> last report on the chain (or None)
    root_seen: dict[Any, float] = field(default_factory=dict)  # root key -> loop time its first report came


class Pusher:
    """Decides and pushes per (feed, target). `run(reports)` consumes an async iterator of
    SignedReports until it ends or the task is cancelled."""

    def __init__(
        self,
        targets: Iterable[FeedTarget],
        policies: Mapping[str, PushPolicy],
        *,
        committee: Any = None,  # when given, reports whose signature does not verify are dropped
        backoff: Backoff = Backoff(base=0.5, cap=30.0, max_attempts=8),
        clock: Clock = time.time,
        history_limit: int = 1000,
        root_wait_s: float = 1.0,
    ) -> None:
        self._targets = {t.name: _TargetState(t) for t in targets}
        if not self._targets:
            raise PushError("no push targets: list chain names in [feed_push] targets")
        if not policies:
            raise PushError("no feeds to push: add [feeds.<id>] tables to the config")
        self.policies = dict(policies)
        self.committee = committee
        self.backoff = backoff
        self._clock = clock
        # The reports of one root arrive one by one (a stream per feed): a report of a root of n
        # waits at most this long for the other n - 1, so they go on-chain in one update.
        self.root_wait_s = root_wait_s
        self._workers: list[asyncio.Task[None]] = []
        self._started = False
        self.history: list[PushOutcome] = []
        self._history_limit = history_limit
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0  # reports being decided or pushed right now

    @property
    def targets(self) -> list[str]:
        return list(self._targets)

    def last_pushed(self, target: str, feed_id: str) -> Any:
        return self._targets[target].last.get(feed_id)

    async def start(self) -> None:
        """Reads every (target, feed)'s on-chain latest, then starts one worker per target."""
        if self._started:
            return
        for state in self._targets.values():
            for feed_id in self.policies:
                state.last[feed_id] = await self._read_latest(state.target, feed_id)
            self._workers.append(asyncio.create_task(self._worker(state), name=f"pusher-{state.target.name}"))
        self._started = True

    async def _read_latest(self, target: FeedTarget, feed_id: str) -> Any:
        for attempt in range(self.backoff.max_attempts):
            try:
                latest = as_report(await target.latest(feed_id))
                log.info("push_start_state", target=target.name, feed=feed_id,
                         round=getattr(latest, "round", None), price=getattr(latest, "price", None))
                return latest
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a chain that is down at start: retry, then give up
                if self.backoff.exhausted(attempt) or isinstance(exc, FeedError):
                    raise PushError(f"cannot read {feed_id} from {target.name}: {exc}; check the chain's RPC") from exc
                log.warning("push_start_retry", target=target.name, feed=feed_id, error=str(exc))
                await asyncio.sleep(self.backoff.delay(attempt))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            try:
                await worker
            except asyncio.CancelledError:
                pass
        self._workers.clear()
        self._started = False

    async def __aenter__(self) -> "Pusher":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def submit(self, signed: SignedReport) -> None:
        """Queues a report for every target (replacing an older one of the same feed still waiting)."""
        if signed.feed_id not in self.policies:
            log.warning("push_skipped", feed=signed.feed_id, round=signed.round,
                        reason=f"no [feeds.\"{signed.feed_id}\"] table in the config: add it to push this feed")
            return
        if self.committee is not None and not signed.verify(self.committee):
            log.warning("push_skipped", feed=signed.feed_id, round=signed.round,
                        reason=f"signature does not verify against committee epoch {self.committee.epoch}")
            return
        for state in self._targets.values():
            waiting = state.pending.get(signed.feed_id)
            if waiting is None or signed.round > waiting.round:
                state.pending[signed.feed_id] = signed
                if signed.root is not None:
                    state.root_seen.setdefault(signed.root_key, asyncio.get_running_loop().time())
                state.wake.set()
        self._idle.clear()

    async def run(self, reports: AsyncIterator[SignedReport]) -> None:
        await self.start()
        async for signed in reports:
            self.submit(signed)

    async def drain(self, timeout: float | None = None) -> None:
        """Waits until every queued report has been decided (tests, and a clean stop)."""
        if timeout is None:
            await self._idle.wait()
        else:
            await within(self._idle.wait(), timeout)

    def _record(self, outcome: PushOutcome) -> None:
        self.history.append(outcome)
        del self.history[: max(0, len(self.history) - self._history_limit)]

    def _update_idle(self) -> None:
        if not any(s.pending for s in self._targets.values()) and not self._busy:
            self._idle.set()

    async def _worker(self, state: _TargetState) -> None:
        while True:
            await state.wake.wait()
            state.wake.clear()
            while state.pending:
                wait = self._root_wait(state)
                if wait > 0:  # part of a root is here: give the rest of it a moment to arrive
                    state.wake.clear()
                    await wait_event(state.wake, wait)
                    continue
                batch = list(state.pending.values())
                state.pending.clear()
                self._busy += len(batch)
                try:
                    for group in self._groups(state, batch):
                        if group[0].root is not None and callable(getattr(state.target, "push_root", None)):
                            await self._handle_root(state, group)
                        else:
                            await self._handle(state, group[0])
                finally:
                    self._busy -= len(batch)
            self._update_idle()

    def _root_wait(self, state: _TargetState) -> float:
        """Seconds to wait for more reports of a root that is not complete yet (0: push now)."""
        if not callable(getattr(state.target, "push_root", None)):
            return 0.0
        counts: dict[Any, int] = {}
        for signed in state.pending.values():
            if signed.root is not None:
                counts[signed.root_key] = counts.get(signed.root_key, 0) + 1
        now = asyncio.get_running_loop().time()
        waits = [state.root_seen.get(key, now) + self.root_wait_s - now
                 for key, count in counts.items()
                 if count < next(s.root.leaf_count for s in state.pending.values() if s.root_key == key)]
        for key in [k for k in state.root_seen if k not in counts]:
            del state.root_seen[key]
        due = [w for w in waits if w > 0]
        return min(due) if due and len(due) == len(waits) else 0.0

    def _groups(self, state: _TargetState, batch: list[SignedReport]) -> list[list[SignedReport]]:
        """Reports of one feed root together (when the target can push a root), the rest alone."""
        if not callable(getattr(state.target, "push_root", None)):
            return [[s] for s in batch]
        groups: dict[Any, list[SignedReport]] = {}
        for signed in batch:
            key = signed.root_key if signed.root is not None else ("alone", signed.feed_id)
            groups.setdefault(key, []).append(signed)
        return list(groups.values())

    async def _handle_root(self, state: _TargetState, group: list[SignedReport]) -> None:
        """The reports of one root that the push rule says are due, in one update."""
        name = state.target.name
        due: list[tuple[SignedReport, PushDecision]] = []
        riders: list[SignedReport] = []  # newer than the chain but not due: may complete the root
        for signed in group:
            decision = self.decide(name, signed)
            log.info("push_decision", target=name, feed=signed.feed_id, round=signed.round, push=decision.push,
                     reason=decision.reason, root_of=signed.root.leaf_count if signed.root else None)
            last = state.last.get(signed.feed_id)
            if decision.push:
                due.append((signed, decision))
            elif last is None or signed.round > getattr(last, "round", -1):
                riders.append(signed)
            else:
                self._record(PushOutcome(name, signed.feed_id, signed.round, False, decision.reason))
        if not due:
            for signed in riders:
                self._record(PushOutcome(name, signed.feed_id, signed.round, False, "within deviation and heartbeat"))
            return
        reports = [signed for signed, _ in due]
        reasons = {signed.feed_id: decision.reason for signed, decision in due}
        rider_reasons = {s.feed_id: "not due; sent with its root (one UpdateFeeds is cheaper than proofs)"
                         for s in riders}
        attempt = 0
        while True:
            try:
                results = await (state.target.push_root(reports, riders=riders) if riders and _takes_riders(state.target)
                                 else state.target.push_root(reports))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - as in _push_one
                retryable = getattr(exc, "retryable", True)
                newer = [s for s in reports if s.feed_id in state.pending]
                if not retryable or self.backoff.exhausted(attempt) or newer:
                    why = ("refused" if not retryable else
                           "superseded by round %d" % state.pending[newer[0].feed_id].round if newer else "gave up")
                    log.warning("push_failed", target=name, feeds=list(reasons), round=reports[0].round,
                                attempts=attempt + 1, outcome=why, error=str(exc))
                    for s in reports:
                        self._record(PushOutcome(name, s.feed_id, s.round, False, f"{why}: {exc}",
                                                 attempts=attempt + 1))
                    return
                delay = self.backoff.delay(attempt)
                log.warning("push_retry", target=name, feeds=list(reasons), round=reports[0].round,
                            attempt=attempt + 1, retry_in_s=round(delay, 2), error=str(exc))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            for s in riders:
                if s.feed_id not in results:  # the target left it out: not due, nothing to do
                    self._record(PushOutcome(name, s.feed_id, s.round, False, "within deviation and heartbeat"))
            reasons.update({k: v for k, v in rider_reasons.items() if k in results})
            for s in [*reports, *(r for r in riders if r.feed_id in results)]:
                result = results.get(s.feed_id)
                if isinstance(result, str):
                    state.last[s.feed_id] = s.report
                    log.info("pushed", target=name, feed=s.feed_id, round=s.round, price=s.report.price, tx=result,
                             reason=reasons[s.feed_id], feeds_in_update=len(results))
                    self._record(PushOutcome(name, s.feed_id, s.round, True, reasons[s.feed_id], result, attempt + 1))
                else:
                    # Not newer (someone else was first): learn what is there now, as _push_one does.
                    await self._refresh(state, s.feed_id)
                    log.info("push_not_newer", target=name, feed=s.feed_id, round=s.round, result=str(result))
                    self._record(PushOutcome(name, s.feed_id, s.round, False, str(result), attempts=attempt + 1))
            return

    async def _refresh(self, state: _TargetState, feed_id: str) -> None:
        try:
            state.last[feed_id] = as_report(await state.target.latest(feed_id))
        except Exception as exc:  # noqa: BLE001 - keep the old view; the next report re-decides
            log.warning("push_refresh_failed", target=state.target.name, feed=feed_id, error=str(exc))

    def decide(self, target: str, signed: SignedReport) -> PushDecision:
        last = self._targets[target].last.get(signed.feed_id)
        return self.policies[signed.feed_id].should_push(last, signed.report, int(self._clock() * 1000))

    async def _handle(self, state: _TargetState, signed: SignedReport) -> None:
        name = state.target.name
        decision = self.decide(name, signed)
        if not decision.push:
            log.info("push_decision", target=name, feed=signed.feed_id, round=signed.round, push=False,
                     reason=decision.reason)
            self._record(PushOutcome(name, signed.feed_id, signed.round, False, decision.reason))
            return
        log.info("push_decision", target=name, feed=signed.feed_id, round=signed.round, push=True, reason=decision.reason)
        await self._push_one(state, signed, decision)

    async def _push_one(self, state: _TargetState, signed: SignedReport, decision: PushDecision) -> None:
        name = state.target.name
        attempt = 0
        while True:
            try:
                result = await state.target.push(signed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is logged; retryable ones retried
                retryable = getattr(exc, "retryable", True)
                newer = state.pending.get(signed.feed_id)
                if not retryable or self.backoff.exhausted(attempt) or newer is not None:
                    why = ("refused" if not retryable else
                           "superseded by round %d" % newer.round if newer is not None else "gave up")
                    log.warning("push_failed", target=name, feed=signed.feed_id, round=signed.round,
                                attempts=attempt + 1, outcome=why, error=str(exc))
                    self._record(PushOutcome(name, signed.feed_id, signed.round, False, f"{why}: {exc}",
                                             attempts=attempt + 1))
                    return
                delay = self.backoff.delay(attempt)
                log.warning("push_retry", target=name, feed=signed.feed_id, round=signed.round, attempt=attempt + 1,
                            retry_in_s=round(delay, 2), error=str(exc))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if isinstance(result, str):
                state.last[signed.feed_id] = signed.report
                log.info("pushed", target=name, feed=signed.feed_id, round=signed.round, price=signed.report.price,
                         tx=result, reason=decision.reason)
                self._record(PushOutcome(name, signed.feed_id, signed.round, True, decision.reason, result, attempt + 1))
            else:
                # Someone else put this round (or a newer one) on-chain: learn what is there now.
                await self._refresh(state, signed.feed_id)
                log.info("push_not_newer", target=name, feed=signed.feed_id, round=signed.round, result=str(result))
                self._record(PushOutcome(name, signed.feed_id, signed.round, False, str(result), attempts=attempt + 1))
            return


def _takes_riders(target: FeedTarget) -> bool:
    try:
        return "riders" in inspect.signature(target.push_root).parameters
    except (TypeError, ValueError):
        return False


# --- the feed server's stream ---------------------------------------------------------------------


async def sse_reports(
    base_url: str,
    *,
    session: aiohttp.ClientSession | None = None,
    backoff: Backoff = Backoff(base=0.5, cap=10.0, max_attempts=1_000_000),
    path: str = "/v1/stream",
) -> AsyncIterator[SignedReport]:
    """SignedReports from a feed server's server-sent events (`GET /v1/stream`), reconnecting with
    backoff when the stream ends or the server is down. Events whose data is not a signed report
    (keep-alives, other event types, malformed JSON) are logged and skipped."""
    url = base_url.rstrip("/") + path
    own = session is None
    session = session or aiohttp.ClientSession()
    attempt = 0
    try:
        while True:
            try:
                async with session.get(url, headers={"Accept": "text/event-stream"},
                                       timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as resp:
                    if resp.status != 200:
                        raise PushError(f"GET {url} answered HTTP {resp.status}; is [feed_push] source a feed server?")
                    log.info("stream_connected", url=url)
                    attempt = 0
                    async for event in read_events(resp):
                        signed = _parse_event(event.data)
                        if signed is not None:
                            yield signed
            except (aiohttp.ClientError, asyncio.TimeoutError, PushError, SseError) as exc:
                log.warning("stream_down", url=url, error=str(exc) or type(exc).__name__)
            delay = backoff.delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)
    finally:
        if own:
            await session.close()


async def client_reports(base_urls: str | list[str], committee: Any, feed_ids: list[str]) -> AsyncIterator[SignedReport]:
    """SignedReports through the SDK's FeedsClient (relay/feeds/client.py): verified against the
    committee, resumed after the last round seen on reconnect, several servers in rotation. Age and
    confidence limits are off: they are a consumer's policy, the pusher only puts signed rounds
    on-chain (the push rule decides what is worth it). Stale/gap events are logged."""
    async with FeedsClient(base_urls, committee, max_age_s=None, max_confidence_ratio=None) as client:
        async for update in client.stream(feed_ids):
            if isinstance(update, SignedReport):
                yield update
            else:
                log.info("stream_event", kind=type(update).__name__, detail=str(update))


def _parse_event(data: str) -> SignedReport | None:
    try:
        body = json.loads(data)
    except json.JSONDecodeError:
        log.warning("stream_event_skipped", reason="data is not JSON", data=data[:80])
        return None
    if isinstance(body, dict) and "report" not in body and isinstance(body.get("signed"), dict):
        body = body["signed"]  # tolerate an envelope {"type": ..., "signed": {...}}
    if not isinstance(body, dict) or "report" not in body:
        return None  # another kind of event (status, keep-alive)
    try:
        return SignedReport.from_json(body)
    except ReportError as exc:  # SignedReportError included
        log.warning("stream_event_skipped", reason=str(exc))
        return None
