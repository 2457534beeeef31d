"""The fan-out hub: verifies and stores each report, and hands every event to the subscribers of its
feed without awaiting any of them (a subscriber too slow to keep up is dropped, never waited for).
Transport-free: the HTTP app (relay/feeds/server/app.py) registers subscribers and posts reports."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable

from relay.feeds.config import FeedConfig
from relay.feeds.report import ReportError
from relay.feeds.server.events import Event, gap_event, live_event, report_event
from relay.feeds.server.history import Entry, FeedState, HistoryError, ReportDb
from relay.feeds.server.metrics import FeedMetrics
from relay.feeds.server.settings import FeedServerError, FeedServerSettings
from relay.feeds.server.subscribers import Subscriber
from relay.feeds.signed import SignedReport
from relay.log import get_logger

log = get_logger("feeds.server")


def current_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: bool
    status: int  # HTTP status for the POST
    reason: str = ""
    feed_id: str = ""
    round: int | None = None

    def to_json(self) -> dict:
        body: dict[str, Any] = {"accepted": self.accepted}
        if self.feed_id:
            body["feed_id"] = self.feed_id
        if self.round is not None:
            body["round"] = self.round
        if self.reason:
            body["reason"] = self.reason
        return body


class FeedHub:
    def __init__(self, committee, feeds: dict[str, FeedConfig], settings: FeedServerSettings | None = None,
                 previous_committee=None) -> None:
        if not feeds:
            raise FeedServerError("no feeds configured: add [feeds.\"<id>\"] tables to the config")
        self.settings = settings or FeedServerSettings()
        self.committees = {committee.epoch: committee}
        if previous_committee is not None:
            # Reports signed just before a rotation stay acceptable.
            self.committees.setdefault(previous_committee.epoch, previous_committee)
        self.committee = committee
        started = current_ms()
        self.feeds = {
            fid: FeedState(cfg, self.settings.history_size, self.settings.stale_after_for(fid), started)
            for fid, cfg in feeds.items()
        }
        unknown = set(self.settings.stale_after) - set(feeds)
        if unknown:
            raise FeedServerError(f"stale_after names feeds that are not configured: {sorted(unknown)}")
        self.metrics = FeedMetrics()
        self._by_feed: dict[str, set[Subscriber]] = {fid: set() for fid in feeds}
        self._subscribers: set[Subscriber] = set()
        self._seq = 0
        self._monitor: asyncio.Task | None = None
        self.dropped_count = 0
        self.db = ReportDb(self.settings.db) if self.settings.db is not None else None
        if self.db is not None:
            self._load_history()

    # --- history -------------------------------------------------------------------------

    def _load_history(self) -> None:
        assert self.db is not None
        for fid, state in self.feeds.items():
            reports, floor = self.db.load(fid, self.settings.history_size)
            for report, received_ms in reports:
                self._seq += 1
                state.history.append(Entry(self._seq, report, received_ms, report_event(report)))
            state.floor = floor
            if state.history and state.floor is None:
                state.floor = state.history[0].report.round - 1 if state.history[0].report.round > 0 else None
            if reports:
                self.metrics.latest_round.labels(fid).set(reports[-1][0].round)
        log.info("history_loaded", db=self.db.location, reports=sum(len(s.history) for s in self.feeds.values()))

    def seq_of(self, feed_id: str, round_: int) -> int | None:
        state = self.feeds.get(feed_id)
        if state is None:
            return None
        for entry in state.history:
            if entry.report.round == round_:
                return entry.seq
        return None

    # --- ingest --------------------------------------------------------------------------

    def ingest_json(self, data: object) -> IngestResult:
        try:
            report = SignedReport.from_json(data)
        except (ReportError, ValueError) as exc:
            return self._reject(f"malformed report: {exc}")
        return self.ingest(report)

    def _reject(self, reason: str, status: int = 400, report: SignedReport | None = None) -> IngestResult:
        self.metrics.reports.labels("rejected").inc()
        log.warning("report_rejected", reason=reason, feed=report.feed_id if report else None,
                    round=report.round if report else None)
        return IngestResult(False, status, reason, report.feed_id if report else "", report.round if report else None)

    def ingest_stream(self, body: bytes, received_ms: int | None = None) -> IngestResult:
        """One message of the JetStream stream (relay/feeds/server/consumer.py): a report already held
        (replayed at catch-up, or also POSTed) or of a feed this server does not serve is passed over
        before the costly signature check; any other goes through `ingest`. `received_ms` is when the stream stored it, so a replayed report
        keeps its age (a feed whose stream went quiet an hour ago is stale, not fresh)."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # ValueError covers bad UTF-8 and bad JSON
            return self._reject("the message is not JSON: publish a SignedReport object")
        try:
            report = SignedReport.from_json(data)
        except (ReportError, ValueError) as exc:
            return self._reject(f"malformed report: {exc}")
        state = self.feeds.get(report.feed_id)
        if state is None:  # the stream carries every feed; this server may serve only some
            self.metrics.reports.labels("not_served").inc()
            return IngestResult(False, 200, "feed not served here", report.feed_id, report.round)
        latest = state.latest
        if latest is not None and report.round <= latest.report.round:
            self.metrics.reports.labels("old").inc()
            return IngestResult(False, 200, "already held", report.feed_id, report.round)
        return self.ingest(report, received_ms)

    def ingest(self, report: SignedReport, received_ms: int | None = None) -> IngestResult:
        """Verify, store and fan out one report. Synchronous: nothing here waits on a subscriber."""
        state = self.feeds.get(report.feed_id)
        if state is None:
            return self._reject(f"feed {report.feed_id!r} is not configured on this server; add [feeds.\"{report.feed_id}\"]",
                                404, report)
        if report.report.decimals != state.config.decimals:
            return self._reject(f"decimals {report.report.decimals} differ from the configured {state.config.decimals} "
                                f"for {report.feed_id}", 400, report)
        committee = self.committees.get(report.epoch)
        if committee is None:
            return self._reject(f"epoch {report.epoch} is not the committee's (this server knows epochs "
                                f"{sorted(self.committees)}); restart it with the current committee file", 400, report)
        if not report.verify(committee):
            return self._reject("signature does not verify under the committee key: the report was altered or not "
                                "signed by the committee", 400, report)
        latest = state.latest
        if latest is not None and report.round <= latest.report.round:
            same = latest.report == report if report.round == latest.report.round else False
            reason = "duplicate" if same else f"round {report.round} is not newer than the latest {latest.report.round}"
            self.metrics.reports.labels("duplicate" if same else "old").inc()
            return IngestResult(False, 200, reason, report.feed_id, report.round)
        received = current_ms() if received_ms is None else min(received_ms, current_ms())
        event = report_event(report)
        evicted = state.history[0].report.round if len(state.history) == state.history.maxlen else None
        if self.db is not None:
            try:
                self.db.add(report, json.dumps(event.data), received, evicted)
            except HistoryError as exc:
                log.error("history_write_failed", db=self.db.location, error=str(exc))
                return IngestResult(False, 503, f"cannot store the report: {exc}; check the disk", report.feed_id, report.round)
        first = state.latest is None
        if evicted is not None:
            state.floor = max(evicted, state.floor or 0)
        elif first and state.floor is None and report.round > 0:
            # Whatever came before this server's first report is unknown to it.
            state.floor = report.round - 1
        self._seq += 1
        state.history.append(Entry(self._seq, report, received, event))
        self.metrics.reports.labels("accepted").inc()
        self.metrics.latest_round.labels(report.feed_id).set(report.round)
        started = time.perf_counter()
        if first:
            for sub in list(self._by_feed[report.feed_id]):
                since = sub.since.get(report.feed_id)
                if since is not None and state.gap_after(since):
                    self._offer(sub, gap_event(report.feed_id, *state.gap_after(since)))
        if state.stale and not state.is_stale(current_ms()):  # a replayed old report leaves it stale
            state.stale = False
            self.metrics.stale.labels(report.feed_id).set(0)
            self._publish(live_event(report.feed_id, report.round))
        self._publish(event)
        self.metrics.fanout.observe(time.perf_counter() - started)
        return IngestResult(True, 200, "", report.feed_id, report.round)

    # --- fan-out ---------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        for sub in list(self._by_feed.get(event.feed_id, ())):
            self._offer(sub, event)

    def _offer(self, sub: Subscriber, event: Event) -> None:
        if sub.closed:
            self.unregister(sub)
        elif not sub.offer(event):
            self._drop(sub)
        elif sub.closed:  # the transport turned out to be gone
            self.unregister(sub)

    def _drop(self, sub: Subscriber) -> None:
        self.dropped_count += 1
        self.metrics.dropped.labels(sub.transport_name).inc()
        log.warning("slow_consumer_dropped", transport=sub.transport_name, queue_size=sub.queue_size)
        self.unregister(sub)
        sub.drop(f"slow consumer: more than {sub.queue_size} events waiting", self.settings.drop_grace_s)

    # --- subscribers -----------------------------------------------------------------------

    def register(self, sub: Subscriber) -> None:
        self._subscribers.add(sub)
        self.metrics.subscribers.labels(sub.transport_name).inc()

    def unregister(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            self.metrics.subscribers.labels(sub.transport_name).dec()
        for fid in sub.ids:
            self._by_feed[fid].discard(sub)

    def detach_all(self) -> list[Subscriber]:
        """Unregister every subscriber (at shutdown) and return them for their transport to close."""
        subs = list(self._subscribers)
        for sub in subs:
            self.unregister(sub)
        return subs

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, sub: Subscriber, ids: Iterable[str], since: dict[str, int] | None = None,
                  after_seq: int | None = None) -> None:
        """Add feeds to a subscriber and queue its catch-up: for a feed in `since`, every held report after
        that round (a gap event first when some are gone); with `after_seq` (Last-Event-ID), every held
        report that arrived after that one; otherwise the latest report. Then the feed's stale state.
        Registration and catch-up happen in one step, so no live event falls between them."""
        since = since or {}
        now = current_ms()
        gaps: list[Event] = []
        reports: list[Entry] = []
        stale: list[Event] = []
        for fid in ids:
            state = self.feeds[fid]
            sub.ids.add(fid)
            self._by_feed[fid].add(sub)
            if fid in since:
                sub.since[fid] = since[fid]
                gap = state.gap_after(since[fid])
                if gap is not None:
                    gaps.append(gap_event(fid, *gap))
                reports.extend(state.after(since[fid]))
            elif after_seq is not None:
                reports.extend(e for e in state.history if e.seq > after_seq)
            elif state.latest is not None:
                reports.append(state.latest)
            if state.stale:
                stale.append(state.stale_event(now))
        # Missed reports in the order they arrived, as a live subscriber would have seen them.
        reports.sort(key=lambda e: e.seq)
        sub.enqueue_backlog([*gaps, *(e.event for e in reports), *stale])

    def unsubscribe(self, sub: Subscriber, ids: Iterable[str]) -> None:
        for fid in ids:
            sub.ids.discard(fid)
            sub.since.pop(fid, None)
            self._by_feed[fid].discard(sub)

    # --- staleness --------------------------------------------------------------------------

    def check_stale(self, now_ms: int | None = None) -> None:
        now = current_ms() if now_ms is None else now_ms
        for fid, state in self.feeds.items():
            stale = state.is_stale(now)
            if stale == state.stale:
                continue
            state.stale = stale
            self.metrics.stale.labels(fid).set(1 if stale else 0)
            if stale:
                log.warning("feed_stale", feed=fid, last_round=state.latest.report.round if state.latest else None,
                            stale_after_ms=state.stale_after_ms)
                self._publish(state.stale_event(now))
            elif state.latest is not None:
                self._publish(live_event(fid, state.latest.report.round))

    async def _watch_stale(self) -> None:
        interval = max(0.05, min(1.0, min(s.stale_after_ms for s in self.feeds.values()) / 4000))
        while True:
            try:
                self.check_stale()
            except Exception:  # a bug here must not silence staleness forever
                log.exception("stale_check_failed")
            await asyncio.sleep(interval)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Publish the current staleness, then keep watching it (needs a running event loop)."""
        self.check_stale()
        self._monitor = asyncio.create_task(self._watch_stale())

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except asyncio.CancelledError:
                pass
        if self.db is not None:
            self.db.close()
