"""The feed server's history: per feed, the last `history_size` reports in memory (for /history and
stream resumption) with the feed's staleness, and optionally the SQLite file (`[feed_server] db`)
that lets a restarted server keep serving them."""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path

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
