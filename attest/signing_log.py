"""The attester's signing log: it never signs two different envelopes for one (source, nonce).

A compromised or buggy relayer, or a reorg the attester's own finality rule did not cover, could
otherwise get the committee to sign two messages for the same slot of a source's nonce sequence.
The log is written (and fsynced) before a partial signature leaves the process.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path


class EquivocationError(Exception):
    """Asked to sign a second, different envelope for a (source domain, nonce) already signed."""


@dataclass(frozen=True, slots=True)
class SignedEntry:
    src_domain: int
    nonce: int
    message_id: bytes
    epoch: int
    partial: bytes
    source_tx: str
    signed_at: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS signed (
    src_domain INTEGER NOT NULL,
    nonce      INTEGER NOT NULL,
    epoch      INTEGER NOT NULL,
    message_id BLOB NOT NULL,
    partial    BLOB NOT NULL,
    source_tx  TEXT NOT NULL,
    signed_at  REAL NOT NULL,
    PRIMARY KEY (src_domain, nonce, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS signed_by_id ON signed (message_id, epoch);
CREATE TABLE IF NOT EXISTS refusals (
    src_domain INTEGER NOT NULL,
    nonce      INTEGER NOT NULL,
    message_id BLOB NOT NULL,
    reason     TEXT NOT NULL,
    at         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, cursor TEXT NOT NULL);
"""


class SigningLog:
    """Small and synchronous on purpose: one row per message, written before the partial is served."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()  # record() holds it while check() logs a refusal

    def close(self) -> None:
        self._db.close()

    def _row(self, row: tuple | None) -> SignedEntry | None:
        if row is None:
            return None
        return SignedEntry(*row)

    def by_message(self, message_id: bytes, epoch: int) -> SignedEntry | None:
        row = self._db.execute(
            "SELECT src_domain, nonce, message_id, epoch, partial, source_tx, signed_at FROM signed "
            "WHERE message_id = ? AND epoch = ?", (message_id, epoch)
        ).fetchone()
        return self._row(row)

    def by_nonce(self, src_domain: int, nonce: int, epoch: int) -> SignedEntry | None:
        row = self._db.execute(
            "SELECT src_domain, nonce, message_id, epoch, partial, source_tx, signed_at FROM signed "
            "WHERE src_domain = ? AND nonce = ? AND epoch = ?", (src_domain, nonce, epoch)
        ).fetchone()
        return self._row(row)

    def check(self, src_domain: int, nonce: int, message_id: bytes, epoch: int) -> SignedEntry | None:
        """The entry already signed for this message, None if it may be signed, or raise."""
        existing = self.by_nonce(src_domain, nonce, epoch)
        if existing is None:
            return None
        if existing.message_id != message_id:
            reason = (f"source {src_domain} nonce {nonce} was already signed for message 0x{existing.message_id.hex()}; "
                      f"refusing 0x{message_id.hex()}")
            with self._lock:
                self._db.execute("INSERT INTO refusals VALUES (?, ?, ?, ?, ?)",
                                 (src_domain, nonce, message_id, reason, time.time()))
            raise EquivocationError(reason)
        return existing

    def record(self, entry: SignedEntry) -> SignedEntry:
        """Insert atomically; if a concurrent call won, return what it wrote (or raise on conflict)."""
        with self._lock:
            existing = self.check(entry.src_domain, entry.nonce, entry.message_id, entry.epoch)
            if existing is not None:
                return existing
            self._db.execute(
                "INSERT INTO signed (src_domain, nonce, epoch, message_id, partial, source_tx, signed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry.src_domain, entry.nonce, entry.epoch, entry.message_id, entry.partial, entry.source_tx,
                 entry.signed_at),
            )
        return entry

    def refusals(self) -> list[tuple[int, int, bytes, str]]:
        return [tuple(r) for r in self._db.execute("SELECT src_domain, nonce, message_id, reason FROM refusals")]

    def get_cursor(self, name: str) -> str | None:
        row = self._db.execute("SELECT cursor FROM cursors WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_cursor(self, name: str, cursor: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO cursors VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor",
                             (name, cursor))
