"""The feed server: takes committee-signed reports from the round leader and serves them over REST,
Server-Sent Events and WebSocket (docs/FEEDS.md "Serving").

    POST /v1/reports               a SignedReport (JSON); verified against the committee, newer rounds only
    GET  /v1/feeds                 every configured feed with its latest round and status
    GET  /v1/feeds/{id}/latest     the latest SignedReport + "stale" + "age_ms"
    GET  /v1/feeds/{id}/history    ?from_round=&limit=
    GET  /v1/stream?ids=a,b        SSE: report / stale / live / gap events, Last-Event-ID resumption
    GET  /v1/ws                    WebSocket: {"op": "subscribe"|"unsubscribe", "ids": [...], "since": {...}}
    GET  /openapi.json, /health, /metrics

Fan-out: each event is serialised once (SSE text, its HTTP/1.1 chunk, the WebSocket message) and
handed to every subscriber without awaiting any of them. An SSE event goes straight into the
subscriber's transport while that transport's buffer is small; otherwise it waits in the
subscriber's bounded queue, and a subscriber whose queue is full is disconnected (SSE: closed; WS:
close 1008 "slow consumer") so it can never hold the others back or grow the server's memory.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from relay.errors import TesseraError
from relay.feeds.config import FeedConfig
from relay.feeds.report import ReportError
from relay.feeds.signed import SignedReport
from relay.lifecycle import cancel_quietly
from relay.log import get_logger

log = get_logger("feeds.server")

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
# Above this many bytes waiting in a subscriber's transport, events queue instead (and the queue bound applies).
TRANSPORT_HIGH_WATER = 64 * 1024
MAX_REPORT_BODY = 16 * 1024
MAX_HISTORY_LIMIT = 1000


class FeedServerError(TesseraError):
    """The feed server cannot start or was given settings it cannot use."""


@dataclass(frozen=True)
class FeedServerSettings:
    history_size: int = 1000  # reports kept per feed for /history and stream resumption
    stale_after_s: float = 3.0  # a feed with no report this long is stale (default: 3 × the round interval)
    stale_after: dict[str, float] = field(default_factory=dict)  # per-feed overrides
    queue_size: int = 256  # events a subscriber may have waiting before it is dropped
    max_subscribers: int = 10_000
    keepalive_s: float = 15.0  # SSE comment / WebSocket ping interval
    send_buffer_bytes: int | None = None  # SO_SNDBUF of stream sockets (None: the kernel's default)
    db: Path | None = None  # SQLite file: history survives a restart (None: memory only)
    drop_grace_s: float = 2.0  # a dropped subscriber's connection is aborted if it has not closed by then

    def __post_init__(self) -> None:
        if self.history_size < 1:
            raise FeedServerError("history_size must be at least 1")
        if self.queue_size < 1:
            raise FeedServerError("queue_size must be at least 1")
        if self.max_subscribers < 1:
            raise FeedServerError("max_subscribers must be at least 1")
        for name, value in [("stale_after_s", self.stale_after_s), *self.stale_after.items()]:
            if not value > 0:
                raise FeedServerError(f"stale_after {name}: {value} must be > 0 seconds")

    def stale_after_for(self, feed_id: str) -> float:
        return self.stale_after.get(feed_id, self.stale_after_s)


# --- events, serialised once --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # report | stale | live | gap
    feed_id: str
    data: dict
    sse: bytes  # the complete SSE event
    sse_chunk: bytes  # the same as one HTTP/1.1 chunk (what aiohttp's chunked writer would send)
    ws: str


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"


def make_event(kind: str, feed_id: str, data: dict, event_id: str | None = None) -> Event:
    body = json.dumps(data, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    sse = f"{head}event: {kind}\ndata: {body}\n\n".encode()
    if kind == "report":
        ws = '{"type":"report","report":' + body + "}"
    else:
        ws = json.dumps({"type": kind, **data}, separators=(",", ":"))
    return Event(kind, feed_id, data, sse, _chunk(sse), ws)


def event_id(feed_id: str, round_: int) -> str:
    return f"{feed_id}:{round_}"


def parse_event_id(value: str) -> tuple[str, int] | None:
    # Feed ids may hold ':'; the round is whatever follows the last one.
    feed_id, sep, round_ = value.strip().rpartition(":")
    if not sep or not feed_id or not round_.isdigit():
        return None
    return feed_id, int(round_)


@dataclass(slots=True)
class Entry:
    seq: int  # server-wide arrival order (Last-Event-ID resumption across feeds)
    report: SignedReport
    received_ms: int
    event: Event


# --- subscribers ---------------------------------------------------------------------------

_CLOSE = object()


class Subscriber:
    transport_name = "?"

    def __init__(self, ids: Iterable[str], queue_size: int) -> None:
        self.ids: set[str] = set(ids)
        self.queue: deque[Any] = deque()
        self.queue_size = queue_size
        self.wakeup = asyncio.Event()
        self.dropped = False
        self.closed = False
        self.since: dict[str, int] = {}

    def enqueue_backlog(self, events: Iterable[Event]) -> None:
        # Catch-up may exceed queue_size (it is bounded by history_size); only live events are bounded.
        self.queue.extend(events)
        if self.queue:
            self.wakeup.set()

    def offer(self, event: Event) -> bool:
        """Hand over one live event without waiting; False when the subscriber is too slow."""
        if len(self.queue) >= self.queue_size:
            return False
        self.queue.append(event)
        self.wakeup.set()
        return True

    def drop(self, reason: str, grace_s: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


class SseSubscriber(Subscriber):
    transport_name = "sse"

    def __init__(self, ids: Iterable[str], queue_size: int, transport: asyncio.Transport, chunked: bool) -> None:
        super().__init__(ids, queue_size)
        self.transport = transport
        self.chunked = chunked
        self.writing = False  # the handler is inside a write (its events are in flight)

    def offer(self, event: Event) -> bool:
        transport = self.transport
        if transport.is_closing():
            self.close()
            return True
        if not self.queue and not self.writing and transport.get_write_buffer_size() <= TRANSPORT_HIGH_WATER:
            # The common case: straight into the socket, no task wake-up per subscriber.
            transport.write(self.sse_bytes(event))
            return True
        return super().offer(event)

    def sse_bytes(self, event: Event) -> bytes:
        return event.sse_chunk if self.chunked else event.sse

    def drop(self, reason: str, grace_s: float) -> None:
        self.dropped = True
        self.queue.clear()
        self.close()
        transport = self.transport
        if not transport.is_closing():
            transport.write(self.sse_bytes(make_event("dropped", "", {"reason": reason})))
            transport.close()  # flushes what it can, then closes
            asyncio.get_running_loop().call_later(grace_s, transport.abort)


class WsSubscriber(Subscriber):
    transport_name = "ws"

    def __init__(self, queue_size: int, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        super().__init__((), queue_size)
        self.ws = ws
        self.transport = transport

    def drop(self, reason: str, grace_s: float) -> None:
        self.dropped = True
        self.queue.clear()
        self.queue.append(_CLOSE)  # the writer sends close 1008 once it gets past its current send
        self.wakeup.set()
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(grace_s, lambda: None if transport.is_closing() else transport.abort())


# --- persistence ---------------------------------------------------------------------------


class ReportDb:
    """SQLite history: every accepted report, pruned to history_size per feed, and per feed the highest
    round pruned (so a restarted server still knows which rounds it can no longer replay)."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS reports (feed_id TEXT NOT NULL, round INTEGER NOT NULL, body TEXT NOT NULL,"
                " received_ms INTEGER NOT NULL, PRIMARY KEY (feed_id, round))"
            )
            self.conn.execute("CREATE TABLE IF NOT EXISTS floors (feed_id TEXT PRIMARY KEY, floor INTEGER NOT NULL)")
        except sqlite3.Error as exc:
            raise FeedServerError(f"cannot open the feed history database {path}: {exc}; check the path and its permissions") from None
        self.path = path

    def load(self, feed_id: str, limit: int) -> tuple[list[tuple[SignedReport, int]], int | None]:
        rows = self.conn.execute(
            "SELECT body, received_ms FROM reports WHERE feed_id = ? ORDER BY round DESC LIMIT ?", (feed_id, limit)
        ).fetchall()
        floor_row = self.conn.execute("SELECT floor FROM floors WHERE feed_id = ?", (feed_id,)).fetchone()
        reports = []
        for body, received_ms in reversed(rows):
            try:
                reports.append((SignedReport.from_json(json.loads(body)), received_ms))
            except (ValueError, ReportError) as exc:
                log.warning("history_row_skipped", feed=feed_id, db=str(self.path), error=str(exc))
        return reports, (floor_row[0] if floor_row else None)

    def add(self, report: SignedReport, body: str, received_ms: int, evicted_upto: int | None) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT OR REPLACE INTO reports (feed_id, round, body, received_ms) VALUES (?, ?, ?, ?)",
                (report.feed_id, report.round, body, received_ms),
            )
            if evicted_upto is not None:
                self.conn.execute("DELETE FROM reports WHERE feed_id = ? AND round <= ?", (report.feed_id, evicted_upto))
                self.conn.execute(
                    "INSERT INTO floors (feed_id, floor) VALUES (?, ?) ON CONFLICT(feed_id) DO UPDATE SET floor = excluded.floor",
                    (report.feed_id, evicted_upto),
                )

    def close(self) -> None:
        self.conn.close()


# --- per-feed state --------------------------------------------------------------------------


class FeedState:
    def __init__(self, config: FeedConfig, history_size: int, stale_after_s: float, started_ms: int) -> None:
        self.config = config
        self.history: deque[Entry] = deque(maxlen=history_size)
        self.stale_after_ms = int(stale_after_s * 1000)
        self.stale = False
        self.started_ms = started_ms
        # Reports with round <= floor may exist that this server no longer holds (evicted, or from before a
        # restart). None: nothing known yet.
        self.floor: int | None = None

    @property
    def latest(self) -> Entry | None:
        return self.history[-1] if self.history else None

    def age_ms(self, now_ms: int) -> int | None:
        latest = self.latest
        return None if latest is None else max(0, now_ms - latest.report.report.published_at)

    def is_stale(self, now_ms: int) -> bool:
        # By the server's own clock (when the report arrived), not the leader's published_at: a leader
        # whose clock is a few seconds off (attesters allow max_skew_ms) must not flap the feed.
        latest = self.latest
        reference = latest.received_ms if latest else self.started_ms
        return now_ms - reference > self.stale_after_ms

    def status(self, now_ms: int) -> str:
        if self.latest is None:
            return "no_data"
        return "stale" if self.is_stale(now_ms) else "live"

    def after(self, round_: int) -> list[Entry]:
        return [e for e in self.history if e.report.round > round_]

    def gap_after(self, round_: int) -> tuple[int, int] | None:
        if self.floor is not None and round_ < self.floor:
            return round_ + 1, self.floor
        return None


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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reports = Counter("tessera_feed_reports", "reports posted to the server, by outcome",
                               ["result"], registry=self.registry)
        self.subscribers = Gauge("tessera_feed_subscribers", "open stream subscriptions", ["transport"],
                                 registry=self.registry)
        self.dropped = Counter("tessera_feed_dropped_subscribers", "subscribers disconnected for being too slow",
                               ["transport"], registry=self.registry)
        self.fanout = Histogram("tessera_feed_fanout_seconds", "time to hand one event to every subscriber",
                                buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
                                registry=self.registry)
        self.latest_round = Gauge("tessera_feed_latest_round", "latest round served", ["feed"], registry=self.registry)
        self.stale = Gauge("tessera_feed_stale", "1 when the feed is stale", ["feed"], registry=self.registry)


class FeedServer:
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
        started = _now_ms()
        self.feeds = {
            fid: FeedState(cfg, self.settings.history_size, self.settings.stale_after_for(fid), started)
            for fid, cfg in feeds.items()
        }
        unknown = set(self.settings.stale_after) - set(feeds)
        if unknown:
            raise FeedServerError(f"stale_after names feeds that are not configured: {sorted(unknown)}")
        self.metrics = _Metrics()
        self._by_feed: dict[str, set[Subscriber]] = {fid: set() for fid in feeds}
        self._subscribers: set[Subscriber] = set()
        self._seq = 0
        self._monitor: asyncio.Task | None = None
        self.dropped_count = 0
        self.db = ReportDb(self.settings.db) if self.settings.db is not None else None
        if self.db is not None:
            self._load_history()
        self._app: web.Application | None = None

    # --- history -------------------------------------------------------------------------

    def _load_history(self) -> None:
        assert self.db is not None
        for fid, state in self.feeds.items():
            reports, floor = self.db.load(fid, self.settings.history_size)
            for report, received_ms in reports:
                self._seq += 1
                state.history.append(Entry(self._seq, report, received_ms, self._report_event(report)))
            state.floor = floor
            if state.history and state.floor is None:
                state.floor = state.history[0].report.round - 1 if state.history[0].report.round > 0 else None
            if reports:
                self.metrics.latest_round.labels(fid).set(reports[-1][0].round)
        log.info("history_loaded", db=str(self.settings.db), reports=sum(len(s.history) for s in self.feeds.values()))

    @staticmethod
    def _report_event(report: SignedReport) -> Event:
        return make_event("report", report.feed_id, report.to_json(), event_id(report.feed_id, report.round))

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

    def ingest(self, report: SignedReport) -> IngestResult:
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
        received = _now_ms()
        event = self._report_event(report)
        evicted = state.history[0].report.round if len(state.history) == state.history.maxlen else None
        if self.db is not None:
            try:
                self.db.add(report, json.dumps(event.data), received, evicted)
            except sqlite3.Error as exc:
                log.error("history_write_failed", db=str(self.settings.db), error=str(exc))
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
                    self._offer(sub, self._gap_event(report.feed_id, *state.gap_after(since)))
        if state.stale and not state.is_stale(received):
            state.stale = False
            self.metrics.stale.labels(report.feed_id).set(0)
            self._publish(make_event("live", report.feed_id, {"feed_id": report.feed_id, "round": report.round}))
        self._publish(event)
        self.metrics.fanout.observe(time.perf_counter() - started)
        return IngestResult(True, 200, "", report.feed_id, report.round)

    # --- fan-out ---------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        for sub in list(self._by_feed.get(event.feed_id, ())):
            self._offer(sub, event)

    def _offer(self, sub: Subscriber, event: Event) -> None:
        if sub.closed:
            self._unregister(sub)
        elif not sub.offer(event):
            self._drop(sub)
        elif sub.closed:  # the transport turned out to be gone
            self._unregister(sub)

    def _drop(self, sub: Subscriber) -> None:
        self.dropped_count += 1
        self.metrics.dropped.labels(sub.transport_name).inc()
        log.warning("slow_consumer_dropped", transport=sub.transport_name, queue_size=sub.queue_size)
        self._unregister(sub)
        sub.drop(f"slow consumer: more than {sub.queue_size} events waiting", self.settings.drop_grace_s)

    def _register(self, sub: Subscriber) -> None:
        self._subscribers.add(sub)
        self.metrics.subscribers.labels(sub.transport_name).inc()

    def _unregister(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            self.metrics.subscribers.labels(sub.transport_name).dec()
        for fid in sub.ids:
            self._by_feed[fid].discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _gap_event(self, feed_id: str, from_round: int, to_round: int) -> Event:
        return make_event("gap", feed_id, {"feed_id": feed_id, "from_round": from_round, "to_round": to_round})

    def _stale_event(self, state: FeedState, now_ms: int) -> Event:
        latest = state.latest
        fid = state.config.id
        return make_event("stale", fid, {
            "feed_id": fid,
            "last_round": latest.report.round if latest else None,
            "age_ms": state.age_ms(now_ms),
            "stale_after_ms": state.stale_after_ms,
        })

    def subscribe(self, sub: Subscriber, ids: Iterable[str], since: dict[str, int] | None = None,
                  after_seq: int | None = None) -> None:
        """Add feeds to a subscriber and queue its catch-up: for a feed in `since`, every held report after
        that round (a gap event first when some are gone); with `after_seq` (Last-Event-ID), every held
        report that arrived after that one; otherwise the latest report. Then the feed's stale state.
        Registration and catch-up happen in one step, so no live event falls between them."""
        since = since or {}
        now = _now_ms()
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
                    gaps.append(self._gap_event(fid, *gap))
                reports.extend(state.after(since[fid]))
            elif after_seq is not None:
                reports.extend(e for e in state.history if e.seq > after_seq)
            elif state.latest is not None:
                reports.append(state.latest)
            if state.stale:
                stale.append(self._stale_event(state, now))
        # Missed reports in the order they arrived, as a live subscriber would have seen them.
        reports.sort(key=lambda e: e.seq)
        sub.enqueue_backlog([*gaps, *(e.event for e in reports), *stale])

    def unsubscribe(self, sub: Subscriber, ids: Iterable[str]) -> None:
        for fid in ids:
            sub.ids.discard(fid)
            sub.since.pop(fid, None)
            self._by_feed[fid].discard(sub)

    def _seq_of(self, feed_id: str, round_: int) -> int | None:
        state = self.feeds.get(feed_id)
        if state is None:
            return None
        for entry in state.history:
            if entry.report.round == round_:
                return entry.seq
        return None

    # --- staleness --------------------------------------------------------------------------

    def check_stale(self, now_ms: int | None = None) -> None:
        now = _now_ms() if now_ms is None else now_ms
        for fid, state in self.feeds.items():
            stale = state.is_stale(now)
            if stale == state.stale:
                continue
            state.stale = stale
            self.metrics.stale.labels(fid).set(1 if stale else 0)
            if stale:
                log.warning("feed_stale", feed=fid, last_round=state.latest.report.round if state.latest else None,
                            stale_after_ms=state.stale_after_ms)
                self._publish(self._stale_event(state, now))
            elif state.latest is not None:
                self._publish(make_event("live", fid, {"feed_id": fid, "round": state.latest.report.round}))

    async def _watch_stale(self) -> None:
        interval = max(0.05, min(1.0, min(s.stale_after_ms for s in self.feeds.values()) / 4000))
        while True:
            try:
                self.check_stale()
            except Exception:  # a bug here must not silence staleness forever
                log.exception("stale_check_failed")
            await asyncio.sleep(interval)

    # --- HTTP --------------------------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        if self._app is None:
            self._app = self._build_app()
        return self._app

    def _feed_or_404(self, request: web.Request) -> FeedState:
        fid = request.match_info["id"]
        state = self.feeds.get(fid)
        if state is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"unknown feed {fid!r}; GET /v1/feeds lists the feeds"}),
                                   content_type="application/json")
        return state

    def _ids_from_query(self, request: web.Request) -> list[str]:
        ids: list[str] = []
        for value in request.query.getall("ids", []):
            ids.extend(part for part in value.split(",") if part)
        ids.extend(request.query.getall("id", []))  # one id per parameter, for ids holding a comma
        ids = list(dict.fromkeys(ids)) or list(self.feeds)
        unknown = [i for i in ids if i not in self.feeds]
        if unknown:
            raise web.HTTPBadRequest(text=json.dumps({"error": f"unknown feeds {unknown}; GET /v1/feeds lists the feeds"}),
                                     content_type="application/json")
        return ids

    def _parse_since(self, raw: object, where: str = "since") -> dict[str, int]:
        """`since` as a JSON object {"ETH/USD": 42} or as `ETH/USD:42,BTC/USD:17`."""
        if raw is None or raw == "":
            return {}
        if isinstance(raw, str) and raw.lstrip().startswith("{"):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"{where} is not valid JSON; send an object like {{\"ETH/USD\": 42}}") from None
        result: dict[str, int] = {}
        if isinstance(raw, dict):
            items = list(raw.items())
        elif isinstance(raw, str):
            items = []
            for part in raw.split(","):
                parsed = parse_event_id(part)
                if parsed is None:
                    raise ValueError(f"{where}: {part!r} is not <feed>:<round>")
                items.append(parsed)
        else:
            raise ValueError(f"{where} must be an object mapping feed ids to the last round seen")
        for fid, round_ in items:
            if fid not in self.feeds:
                raise ValueError(f"{where}: unknown feed {fid!r}; GET /v1/feeds lists the feeds")
            if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0:
                raise ValueError(f"{where}.{fid}: {round_!r} must be a round number (integer >= 0)")
            result[fid] = round_
        return result

    def _build_app(self) -> web.Application:
        routes = web.RouteTableDef()
        server = self

        @routes.post("/v1/reports")
        async def post_report(request: web.Request) -> web.Response:
            try:
                data = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                server.metrics.reports.labels("rejected").inc()
                return web.json_response({"accepted": False, "reason": "the body is not JSON: POST a SignedReport object"},
                                         status=400)
            result = server.ingest_json(data)
            return web.json_response(result.to_json(), status=result.status)

        @routes.get("/v1/feeds")
        async def list_feeds(request: web.Request) -> web.Response:
            now = _now_ms()
            feeds = []
            for fid, state in server.feeds.items():
                latest = state.latest
                feeds.append({
                    "id": fid,
                    "description": state.config.description,
                    "decimals": state.config.decimals,
                    "latest_round": latest.report.round if latest else None,
                    "status": state.status(now),
                    "age_ms": state.age_ms(now),
                    "stale_after_ms": state.stale_after_ms,
                })
            return web.json_response({"feeds": feeds, "epoch": server.committee.epoch})

        @routes.get(r"/v1/feeds/{id:.+}/latest")
        async def latest(request: web.Request) -> web.Response:
            state = server._feed_or_404(request)
            entry = state.latest
            if entry is None:
                return _json_error(404, f"feed {state.config.id!r} has no report yet; retry after the next round")
            now = _now_ms()
            return web.json_response({**entry.event.data, "stale": state.is_stale(now), "age_ms": state.age_ms(now)})

        @routes.get(r"/v1/feeds/{id:.+}/history")
        async def history(request: web.Request) -> web.Response:
            state = server._feed_or_404(request)
            try:
                from_round = int(request.query.get("from_round", "0"))
                limit = int(request.query.get("limit", "100"))
            except ValueError:
                return _json_error(400, "from_round and limit must be integers")
            if from_round < 0 or not 1 <= limit <= MAX_HISTORY_LIMIT:
                return _json_error(400, f"from_round must be >= 0 and limit in 1..{MAX_HISTORY_LIMIT}")
            entries = [e for e in state.history if e.report.round >= from_round][:limit]
            held_from = state.history[0].report.round if state.history else None
            return web.json_response({
                "feed_id": state.config.id,
                "reports": [e.event.data for e in entries],
                "oldest_round": held_from,
                "complete_after": state.floor,  # rounds <= this may be missing here
                "next_from_round": entries[-1].report.round + 1 if len(entries) == limit else None,
            })

        @routes.get("/v1/stream")
        async def stream(request: web.Request) -> web.StreamResponse:
            ids = server._ids_from_query(request)
            try:
                since = server._parse_since(request.query.get("since"))
            except ValueError as exc:
                return _json_error(400, str(exc))
            after_seq = None
            last_event = request.headers.get("Last-Event-ID")
            if last_event:
                parsed = parse_event_id(last_event)
                if parsed is None or parsed[0] not in server.feeds:
                    return _json_error(400, f"Last-Event-ID {last_event!r} is not <feed>:<round> of a served feed")
                fid, round_ = parsed
                since.setdefault(fid, round_)
                after_seq = server._seq_of(fid, round_)
                # When that report is no longer held, the other feeds start from their latest report.
            if server.subscriber_count >= server.settings.max_subscribers:
                return _json_error(503, f"this server already has {server.settings.max_subscribers} subscribers; "
                                        "retry later or use another feed server")
            transport = request.transport
            if transport is None or transport.is_closing():
                return web.Response(status=499)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                   "X-Accel-Buffering": "no"})
            chunked = request.version >= (1, 1)
            if chunked:
                response.enable_chunked_encoding()
            await response.prepare(request)
            server._tune_socket(transport)
            await response.write(b"retry: 1000\n\n")
            sub = SseSubscriber((), server.settings.queue_size, transport, chunked)
            server._register(sub)
            server.subscribe(sub, ids, since, after_seq)
            keepalive = server.settings.keepalive_s
            try:
                while not sub.closed:
                    try:
                        await asyncio.wait_for(sub.wakeup.wait(), keepalive)
                    except TimeoutError:
                        if transport.is_closing():
                            break
                        sub.writing = True
                        await response.write(b": keepalive\n\n")
                        sub.writing = False
                        continue
                    sub.wakeup.clear()
                    while sub.queue and not sub.closed:
                        item = sub.queue.popleft()
                        sub.writing = True
                        await response.write(item.sse)
                        sub.writing = False
            except (ConnectionError, RuntimeError):  # the subscriber went away mid-write
                pass
            finally:
                sub.closed = True
                server._unregister(sub)
            return response

        @routes.get("/v1/ws")
        async def websocket(request: web.Request) -> web.StreamResponse:
            if server.subscriber_count >= server.settings.max_subscribers:
                return _json_error(503, f"this server already has {server.settings.max_subscribers} subscribers; "
                                        "retry later or use another feed server")
            ws = web.WebSocketResponse(heartbeat=server.settings.keepalive_s, max_msg_size=64 * 1024)
            await ws.prepare(request)
            transport = request.transport
            if transport is not None:
                server._tune_socket(transport)
            sub = WsSubscriber(server.settings.queue_size, ws, transport)
            server._register(sub)
            writer = asyncio.create_task(server._ws_writer(sub))
            try:
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        if msg.type == WSMsgType.BINARY:
                            server._ws_error(sub, "send JSON text messages, not binary")
                        continue
                    server._ws_command(sub, msg.data)
            finally:
                sub.closed = True
                server._unregister(sub)
                sub.wakeup.set()
                await cancel_quietly(writer)
            return ws

        @routes.get("/openapi.json")
        async def openapi(request: web.Request) -> web.Response:
            return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")

        @routes.get("/health")
        async def health(request: web.Request) -> web.Response:
            now = _now_ms()
            statuses = {fid: s.status(now) for fid, s in server.feeds.items()}
            return web.json_response({
                "ok": True,
                "epoch": server.committee.epoch,
                "feeds": statuses,
                "stale": sorted(fid for fid, st in statuses.items() if st != "live"),
                "subscribers": server.subscriber_count,
                "dropped_subscribers": server.dropped_count,
            })

        @routes.get("/metrics")
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(server.metrics.registry), content_type="text/plain", charset="utf-8")

        app = web.Application(client_max_size=MAX_REPORT_BODY)
        app.add_routes(routes)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    def _tune_socket(self, transport: asyncio.BaseTransport) -> None:
        size = self.settings.send_buffer_bytes
        sock = transport.get_extra_info("socket")
        if size is not None and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            except OSError as exc:
                log.warning("send_buffer_not_set", error=str(exc))

    # --- WebSocket ---------------------------------------------------------------------------

    def _ws_error(self, sub: WsSubscriber, message: str) -> None:
        self._offer_control(sub, json.dumps({"type": "error", "message": message}))

    def _offer_control(self, sub: WsSubscriber, text: str) -> None:
        # Replies to a subscriber's own requests go ahead of the bound: they are few and it asked for them.
        sub.queue.append(text)
        sub.wakeup.set()

    def _ws_command(self, sub: WsSubscriber, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            return self._ws_error(sub, 'not JSON; send {"op": "subscribe", "ids": ["ETH/USD"]}')
        if not isinstance(message, dict) or message.get("op") not in ("subscribe", "unsubscribe"):
            return self._ws_error(sub, 'unknown op; use {"op": "subscribe"|"unsubscribe", "ids": [...]}')
        ids = message.get("ids")
        if ids is None and message["op"] == "subscribe":
            ids = list(self.feeds)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return self._ws_error(sub, "ids must be a list of feed id strings")
        unknown = [i for i in ids if i not in self.feeds]
        if unknown:
            return self._ws_error(sub, f"unknown feeds {unknown}; GET /v1/feeds lists the feeds")
        if message["op"] == "unsubscribe":
            self.unsubscribe(sub, ids)
            return self._offer_control(sub, json.dumps({"type": "unsubscribed", "ids": ids}))
        try:
            since = self._parse_since(message.get("since"))
        except ValueError as exc:
            return self._ws_error(sub, str(exc))
        self._offer_control(sub, json.dumps({"type": "subscribed", "ids": ids}))
        self.subscribe(sub, [i for i in ids if i not in sub.ids or i in since], since)

    async def _ws_writer(self, sub: WsSubscriber) -> None:
        ws = sub.ws
        try:
            while not sub.closed:
                await sub.wakeup.wait()
                sub.wakeup.clear()
                while sub.queue and not sub.closed:
                    item = sub.queue.popleft()
                    if item is _CLOSE:
                        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow consumer")
                        return
                    await ws.send_str(item if isinstance(item, str) else item.ws)
        except (ConnectionError, RuntimeError):
            pass

    # --- lifecycle -------------------------------------------------------------------------

    async def _on_startup(self, app: web.Application) -> None:
        self.check_stale()
        self._monitor = asyncio.create_task(self._watch_stale())

    async def _on_shutdown(self, app: web.Application) -> None:
        for sub in list(self._subscribers):
            self._unregister(sub)
            sub.close()
            if isinstance(sub, WsSubscriber) and not sub.ws.closed:
                try:
                    await asyncio.wait_for(sub.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"), 1.0)
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
            elif isinstance(sub, SseSubscriber):
                sub.transport.close()

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except asyncio.CancelledError:
                pass
        if self.db is not None:
            self.db.close()
