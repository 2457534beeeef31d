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
    """Asked to sign a second, different envelope for a (source domain, nonce) already signed, or a
    second, different PROOF_ATTESTATION for a result already attested."""


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
-- Proof attestations. The committee has no nonce sequence (src_domain 0, nonce 0), so "never sign
-- two" is keyed on the result an attestation speaks for.
CREATE TABLE IF NOT EXISTS attested (
    result_id  BLOB NOT NULL,
    epoch      INTEGER NOT NULL,
    message_id BLOB NOT NULL,
    partial    BLOB NOT NULL,
    source_tx  TEXT NOT NULL,
    signed_at  REAL NOT NULL,
    PRIMARY KEY (result_id, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS attested_by_id ON attested (message_id, epoch);
CREATE TABLE IF NOT EXISTS task_requests (
    request_id BLOB PRIMARY KEY,
    envelope   BLOB NOT NULL,
    source_tx  TEXT NOT NULL,
    seen_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_results (
    result_id      BLOB PRIMARY KEY,
    request_id     BLOB NOT NULL,
    envelope       BLOB NOT NULL,
    source_tx      TEXT NOT NULL,
    block_time     INTEGER,
    attestation_id BLOB,
    status         TEXT NOT NULL,  -- pending | attested | refused
    method         INTEGER,
    reason         TEXT NOT NULL DEFAULT '',
    updated_at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS task_results_by_request ON task_results (request_id);
CREATE INDEX IF NOT EXISTS task_results_by_attestation ON task_results (attestation_id);
"""


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """What this attester decided about one TASK_RESULT (GET /v1/task-results/{result_id})."""

    result_id: bytes
    request_id: bytes
    envelope: bytes
    source_tx: str
    block_time: int | None
    attestation_id: bytes | None
    status: str  # pending | attested | refused
    method: int | None
    reason: str
    updated_at: float


_RESULT_COLUMNS = ", ".join(ResultRecord.__slots__)


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
        if row is None:
            row = self._db.execute(
                "SELECT 0, 0, message_id, epoch, partial, source_tx, signed_at FROM attested "
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

    # -- proof attestations ----------------------------------------------------------------
    def record_attestation(self, result_id: bytes, entry: SignedEntry) -> SignedEntry:
        """Insert the partial for a result's attestation; the one already written if it is the same
        envelope; EquivocationError if a different attestation was signed for this result."""
        with self._lock:
            row = self._db.execute(
                "SELECT 0, 0, message_id, epoch, partial, source_tx, signed_at FROM attested "
                "WHERE result_id = ? AND epoch = ?", (result_id, entry.epoch)).fetchone()
            existing = self._row(row)
            if existing is not None:
                if existing.message_id != entry.message_id:
                    raise EquivocationError(
                        f"result 0x{result_id.hex()} was already attested as 0x{existing.message_id.hex()}; "
                        f"refusing a second attestation 0x{entry.message_id.hex()} (did the result's block change?)")
                return existing
            self._db.execute(
                "INSERT INTO attested (result_id, epoch, message_id, partial, source_tx, signed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (result_id, entry.epoch, entry.message_id, entry.partial, entry.source_tx, entry.signed_at))
        return entry

    def remember_request(self, request_id: bytes, envelope: bytes, source_tx: str) -> bool:
        """Keep a final TASK_REQUEST so its results can be checked against it; False if known."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO task_requests VALUES (?, ?, ?, ?)",
                                   (request_id, envelope, source_tx, time.time()))
        return cur.rowcount == 1

    def request_envelope(self, request_id: bytes) -> bytes | None:
        row = self._db.execute("SELECT envelope FROM task_requests WHERE request_id = ?", (request_id,)).fetchone()
        return row[0] if row else None

    def remember_result(self, result_id: bytes, request_id: bytes, envelope: bytes, source_tx: str,
                        block_time: int | None, attestation_id: bytes | None) -> ResultRecord:
        """Record a final TASK_RESULT as pending (unless already known) and return its record."""
        with self._lock:
            self._db.execute(
                f"INSERT OR IGNORE INTO task_results ({_RESULT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, '', ?)",
                (result_id, request_id, envelope, source_tx, block_time, attestation_id, time.time()))
        record = self.task_result(result_id)
        assert record is not None
        return record

    def _results(self, where: str, args: tuple) -> list[ResultRecord]:
        rows = self._db.execute(f"SELECT {_RESULT_COLUMNS} FROM task_results WHERE {where}", args).fetchall()
        return [ResultRecord(*row) for row in rows]

    def task_result(self, result_id: bytes) -> ResultRecord | None:
        found = self._results("result_id = ?", (result_id,))
        return found[0] if found else None

    def task_result_by_attestation(self, attestation_id: bytes) -> ResultRecord | None:
        found = self._results("attestation_id = ?", (attestation_id,))
        return found[0] if found else None

    def results_for_request(self, request_id: bytes) -> list[ResultRecord]:
        return self._results("request_id = ?", (request_id,))

    def pending_results(self) -> list[ResultRecord]:
        return self._results("status = 'pending'", ())

    def set_result_status(self, result_id: bytes, status: str, reason: str, method: int | None) -> None:
        with self._lock:
            self._db.execute("UPDATE task_results SET status = ?, reason = ?, method = ?, updated_at = ? "
                             "WHERE result_id = ?", (status, reason, method, time.time(), result_id))

    def refusals(self) -> list[tuple[int, int, bytes, str]]:
        return [tuple(r) for r in self._db.execute("SELECT src_domain, nonce, message_id, reason FROM refusals")]

    def get_cursor(self, name: str) -> str | None:
        row = self._db.execute("SELECT cursor FROM cursors WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_cursor(self, name: str, cursor: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO cursors VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor",
                             (name, cursor))
