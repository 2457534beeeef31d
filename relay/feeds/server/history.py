"""The feed server's history: per feed, the last `history_size` reports in memory (for /history and
stream resumption) with the feed's staleness, and optionally a database (`[feed_server] db`: an
SQLite file, or a PostgreSQL URL) that lets a restarted server keep serving them."""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from relay.database import is_postgres_url, redact
from relay.feeds.config import FeedConfig
from relay.feeds.report import ReportError
from relay.feeds.server.events import Event, stale_event
from relay.feeds.server.settings import FeedServerError
from relay.feeds.signed import SignedReport
from relay.log import get_logger

log = get_logger("feeds.server")


@dataclass(slots=True)
class Entry:
    seq: int  # server-wide arrival order (Last-Event-ID resumption across feeds)
    report: SignedReport
    received_ms: int
    event: Event


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

    def stale_event(self, now_ms: int) -> Event:
        latest = self.latest
        return stale_event(self.config.id, latest.report.round if latest else None, self.age_ms(now_ms),
                           self.stale_after_ms)

    def after(self, round_: int) -> list[Entry]:
        return [e for e in self.history if e.report.round > round_]

    def gap_after(self, round_: int) -> tuple[int, int] | None:
        if self.floor is not None and round_ < self.floor:
            return round_ + 1, self.floor
        return None


class HistoryError(FeedServerError):
    """The history database refused a read or a write."""


_DB_ERRORS = (sqlite3.Error, psycopg.Error)
# BIGINT: received_ms (milliseconds since 1970) does not fit PostgreSQL's 32-bit INTEGER.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS reports (feed_id TEXT NOT NULL, round BIGINT NOT NULL, body TEXT NOT NULL,"
    " received_ms BIGINT NOT NULL, PRIMARY KEY (feed_id, round))",
    "CREATE TABLE IF NOT EXISTS floors (feed_id TEXT PRIMARY KEY, floor BIGINT NOT NULL)",
)


class ReportDb:
    """The persisted history: every accepted report, pruned to history_size per feed, and per feed the
    highest round pruned (so a restarted server still knows which rounds it can no longer replay).

    `db` is an SQLite file (the default) or a PostgreSQL URL (psycopg, autocommit; a dropped
    connection is opened again at the next write). Calls are synchronous, like the hub's ingest:
    one short statement or transaction per accepted report. Several feed servers may share one
    PostgreSQL database: a report is stored once per (feed, round), whoever writes it first or last."""

    def __init__(self, db: str | Path) -> None:
        self.postgres = is_postgres_url(db)
        self.location = redact(db)
        self._db = db
        try:
            self.conn: Any = self._connect()
            for statement in _SCHEMA:
                self._execute(statement)
        except _DB_ERRORS as exc:
            what = "the URL, that the server runs and the database exists" if self.postgres else \
                "the path and its permissions"
            detail = " ".join(str(exc).split())  # libpq's messages span lines
            raise HistoryError(f"cannot open the feed history database {self.location}: {detail}; check {what}") from None

    @property
    def path(self) -> Path | None:
        """The SQLite file (None for a PostgreSQL history)."""
        return None if self.postgres else Path(self._db)

    def _connect(self) -> Any:
        if self.postgres:
            return psycopg.connect(str(self._db), autocommit=True, connect_timeout=10)
        path = Path(self._db)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def _execute(self, sql: str, args: tuple = ()) -> Any:
        return self.conn.execute(self._sql(sql), args)

    def load(self, feed_id: str, limit: int) -> tuple[list[tuple[SignedReport, int]], int | None]:
        rows = self._execute("SELECT body, received_ms FROM reports WHERE feed_id = ? ORDER BY round DESC LIMIT ?",
                             (feed_id, limit)).fetchall()
        floor_row = self._execute("SELECT floor FROM floors WHERE feed_id = ?", (feed_id,)).fetchone()
        reports = []
        for body, received_ms in reversed(rows):
            try:
                reports.append((SignedReport.from_json(json.loads(body)), received_ms))
            except (ValueError, ReportError) as exc:
                log.warning("history_row_skipped", feed=feed_id, db=self.location, error=str(exc))
        return reports, (floor_row[0] if floor_row else None)

    def add(self, report: SignedReport, body: str, received_ms: int, evicted_upto: int | None) -> None:
        """Store one accepted report (and prune what fell out of the history) in one transaction;
        raises HistoryError when the database refuses it."""
        try:
            if self.postgres and self.conn.closed:
                self.conn = self._connect()  # the server restarted or dropped us: one new connection
            self._add(report, body, received_ms, evicted_upto)
        except _DB_ERRORS as exc:
            if self.postgres and not self.conn.closed and self.conn.broken:
                self.conn.close()
            raise HistoryError(str(exc)) from None

    def _add(self, report: SignedReport, body: str, received_ms: int, evicted_upto: int | None) -> None:
        statements = [(
            "INSERT INTO reports (feed_id, round, body, received_ms) VALUES (?, ?, ?, ?) ON CONFLICT (feed_id, round) "
            "DO UPDATE SET body = excluded.body, received_ms = excluded.received_ms",
            (report.feed_id, report.round, body, received_ms))]
        if evicted_upto is not None:
            statements += [
                ("DELETE FROM reports WHERE feed_id = ? AND round <= ?", (report.feed_id, evicted_upto)),
                ("INSERT INTO floors (feed_id, floor) VALUES (?, ?) ON CONFLICT (feed_id) DO UPDATE SET floor = excluded.floor",
                 (report.feed_id, evicted_upto)),
            ]
        if self.postgres:
            with self.conn.transaction():
                for sql, args in statements:
                    self._execute(sql, args)
        else:
            with self.conn:
                self.conn.execute("BEGIN")
                for sql, args in statements:
                    self._execute(sql, args)

    def close(self) -> None:
        self.conn.close()
