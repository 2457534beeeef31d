"""The attester's signing log: it never signs two different envelopes for one (source, nonce).

A compromised or buggy relayer, or a reorg the attester's own finality rule did not cover, could
otherwise get the committee to sign two messages for the same slot of a source's nonce sequence.
The log is written (and fsynced) before a partial signature leaves the process.

Group commit (SQLite): the writes of a burst (signatures, the watch cursor, task records) share one
transaction, committed once for many messages instead of once per message — when the writes pause
(`commit_idle_s`), at the latest `commit_within_s` after the first uncommitted write, after
`commit_every` writes, on `flush()` and on `close()`. The one rule: nothing signed leaves the process
before it is durable — whoever serves an entry (the attester's HTTP answers) calls `flush()` first.
One transaction, one atomic commit: a watch cursor is never durable ahead of the records it covers,
and a crash before the commit loses records and cursor together (the watcher reads those messages
again; nothing of them was served). Checks (`check`, `by_nonce`) run on the same connection and see
the uncommitted rows. Without a running event loop (no timer to bound the delay: the operator CLI,
synchronous callers) every write commits at once, as with `commit_every=1`.

It lives in an SQLite file (one attester process), or in PostgreSQL (`db = "postgresql://..."`),
where a member's active and standby replicas share it: every write runs in a transaction holding
one advisory lock of the log, so the checks and the insert of a signature are one step across
replicas too — two replicas asked at once for conflicting signatures sign at most one. psycopg,
not asyncpg: the attester calls the log synchronously (like sqlite3), between awaits.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


class EquivocationError(Exception):
    """Asked to sign a second, different envelope for a (source domain, nonce) already signed, or a
    second, different PROOF_ATTESTATION for a result already attested."""


@dataclass(frozen=True, slots=True)
class SignedEntry:
    """A message this attester saw final (table `signed`), or a proof attestation / verdict it signed.
    An empty `partial` (messages only): seen final, slot (src_domain, nonce, epoch) taken, partial
    not signed yet — the attester signs it on first request (relay/attester.py)."""

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
-- Task protocol v2: one verdict per result, signed in one envelope per destination board. "Never
-- sign two" is keyed on (result, destination): the same destination never gets a second envelope,
-- and every destination of a result gets the same verdict payload.
CREATE TABLE IF NOT EXISTS verdicts (
    result_id  BLOB NOT NULL,
    dst_domain INTEGER NOT NULL,
    epoch      INTEGER NOT NULL,
    message_id BLOB NOT NULL,
    payload    BLOB NOT NULL,
    partial    BLOB NOT NULL,
    source_tx  TEXT NOT NULL,
    signed_at  REAL NOT NULL,
    PRIMARY KEY (result_id, dst_domain, epoch)
);
CREATE UNIQUE INDEX IF NOT EXISTS verdicts_by_id ON verdicts (message_id, epoch);
-- Batch roots (docs/PROTOCOL.md "Batch attestations"): signed only over messages already in `signed`
-- (seen final by this attester, each holding its own (source, nonce, epoch) slot), so a root never
-- signs a second envelope for a slot. message_ids: the batch's ids in order, concatenated.
CREATE TABLE IF NOT EXISTS roots (
    root        BLOB NOT NULL,
    epoch       INTEGER NOT NULL,
    src_domain  INTEGER NOT NULL,
    dst_domain  INTEGER NOT NULL,
    leaf_count  INTEGER NOT NULL,
    message_ids BLOB NOT NULL,
    partial     BLOB NOT NULL,
    signed_at   REAL NOT NULL,
    PRIMARY KEY (root, epoch, src_domain, dst_domain)
);
-- How many signed roots hold each message (record_root's cap): anyone may ask for roots over any
-- subset or order of the messages an attester saw final, so the roots table is bounded per message.
CREATE TABLE IF NOT EXISTS root_counts (
    message_id BLOB NOT NULL,
    epoch      INTEGER NOT NULL,
    roots      INTEGER NOT NULL,
    PRIMARY KEY (message_id, epoch)
);
"""

# Columns task_results gained with task protocol v2 (added to logs written before it).
_V2_RESULT_COLUMNS = (
    ("version", "INTEGER NOT NULL DEFAULT 1"),
    ("verdict", "INTEGER"),  # v2: 1 valid, 2 refused (once signed)
    ("refusal", "INTEGER"),  # v2: the RefusalReason of a refused verdict
    ("serving_attestation_id", "BLOB"),  # v2: the verdict envelope to the serving board
    ("verdict_payload", "BLOB"),  # v2: the signed verdict payload (the same in both envelopes)
)


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """What this attester decided about one TASK_RESULT (GET /v1/task-results/{result_id})."""

    result_id: bytes
    request_id: bytes
    envelope: bytes
    source_tx: str
    block_time: int | None
    attestation_id: bytes | None
    status: str  # pending | attested (signed: v1 attestation or v2 verdict) | refused (v1, unsigned) | abstained (v2)
    method: int | None
    reason: str
    updated_at: float
    version: int = 1  # task protocol of the result
    verdict: int | None = None  # v2: 1 valid, 2 refused, once signed
    refusal: int | None = None  # v2: RefusalReason of a refused verdict
    # v2: the two verdict envelopes' ids — attestation_id goes to the requester's board, this one to
    # the serving board.
    serving_attestation_id: bytes | None = None
    verdict_payload: bytes | None = None


_RESULT_COLUMNS = ", ".join(ResultRecord.__slots__)


_IDENTITY_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chains (domain INTEGER PRIMARY KEY, identity TEXT NOT NULL);
"""

_LOG_LOCK = 7305  # the advisory lock every write of a PostgreSQL signing log holds

# Group commit defaults (SQLite): a burst's writes share a transaction, committed when the writes pause
# for COMMIT_IDLE_S, at most COMMIT_WITHIN_S after the first uncommitted write, or every COMMIT_EVERY
# writes. Serving anything signed commits first (flush), so these only bound the work a crash redoes.
COMMIT_EVERY = 512
COMMIT_IDLE_S = 0.05
COMMIT_WITHIN_S = 0.25
_ROLLED_BACK = ("the signing log's uncommitted writes were rolled back by SQLite (an I/O error?); nothing of them was "
                "served, and the watchers start again from the last durable cursor")


MAX_ROOTS_PER_MESSAGE = 16  # signed roots one message may be in (a relayer's batch, re-formed batches, other relayers')


class RootLimitError(Exception):
    """Signing this root would put a message in more than MAX_ROOTS_PER_MESSAGE signed roots."""

    def __init__(self, message: str, over: list[bytes]) -> None:
        super().__init__(message)
        self.over = over


class SigningLogError(Exception):
    """The signing log cannot be opened, or belongs to another committee member."""


def _pg_types(ddl: str) -> str:
    for old, new in (("BLOB", "BYTEA"), ("REAL", "DOUBLE PRECISION"), ("INTEGER", "BIGINT")):
        ddl = re.sub(rf"\b{old}\b", new, ddl)
    return ddl


class _Postgres:
    """A psycopg connection that answers the sqlite3 calls the log makes: `?` placeholders, INSERT
    OR IGNORE, PRAGMA table_info, SQLite type names in the schema."""

    def __init__(self, url: str) -> None:
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise SigningLogError(f"cannot connect to the signing log's PostgreSQL database: {exc}; check "
                                  "[attester] db, that the server runs and the database exists") from None
        self.depth = 0  # nesting of _WriteLock

    @staticmethod
    def _sql(sql: str) -> str:
        table = re.fullmatch(r"PRAGMA table_info\((\w+)\)", sql.strip())
        if table:
            return ("SELECT ordinal_position, column_name FROM information_schema.columns "
                    f"WHERE table_schema = current_schema() AND table_name = '{table.group(1)}'")
        if sql.lstrip().upper().startswith("ALTER TABLE"):  # a column added to an older log
            sql = _pg_types(re.sub(r"(?i)ADD COLUMN (?!IF NOT EXISTS)", "ADD COLUMN IF NOT EXISTS ", sql))
        if sql.lstrip().upper().startswith("INSERT OR IGNORE"):
            sql = re.sub(r"(?i)INSERT OR IGNORE", "INSERT", sql, count=1) + " ON CONFLICT DO NOTHING"
        return sql

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        sql = self._sql(sql)
        if params:
            sql = sql.replace("%", "%%").replace("?", "%s")
        return self.conn.execute(sql, params or None)  # type: ignore[arg-type]

    def executescript(self, script: str) -> None:
        with self.conn.transaction():
            self.conn.execute(f"SELECT pg_advisory_xact_lock({_LOG_LOCK})")
            self.conn.execute(_pg_types(script))

    def close(self) -> None:
        self.conn.close()


class _WriteLock:
    """What `with self._lock:` takes around every write and check-then-write: the process's lock,
    and on PostgreSQL (outermost only) a transaction holding the log's advisory lock, so replicas
    of one member take turns. A refusal (EquivocationError) still commits: its record is kept."""

    def __init__(self, db: sqlite3.Connection | _Postgres, log: "SigningLog | None" = None) -> None:
        self._thread = threading.RLock()
        self._db = db if isinstance(db, _Postgres) else None
        self._tx: list[Any] = []
        self._log = log  # SQLite group commit: told when the outermost write section starts and ends
        self._depth = 0

    def __enter__(self) -> None:
        self._thread.acquire()
        if self._log is not None:
            self._depth += 1
            if self._depth == 1:
                try:
                    self._log._begin()
                except BaseException:
                    self._depth -= 1
                    self._thread.release()
                    raise
        if self._db is not None:
            self._db.depth += 1
            if self._db.depth == 1:
                tx = self._db.conn.transaction()
                tx.__enter__()
                self._tx.append(tx)
                self._db.conn.execute(f"SELECT pg_advisory_xact_lock({_LOG_LOCK})")

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if self._log is not None:
                self._depth -= 1
                if self._depth == 0:
                    self._log._written()
            if self._db is not None:
                self._db.depth -= 1
                if self._db.depth == 0:
                    tx = self._tx.pop()
                    if isinstance(exc, EquivocationError):
                        tx.__exit__(None, None, None)
                    else:
                        tx.__exit__(kind, exc, tb)
        finally:
            self._thread.release()


def is_postgres_url(db: str | Path) -> bool:
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


class SigningLog:
    """Small and synchronous on purpose: one row per message, written before the partial is served.

    `member` (the attester's index) is recorded on first open and checked after: a log shared by
    mistake between two members would hand one member's partials to the other."""

    def __init__(self, path: str | Path, member: int | None = None, *, commit_every: int = COMMIT_EVERY,
                 commit_idle_s: float = COMMIT_IDLE_S, commit_within_s: float = COMMIT_WITHIN_S) -> None:
        if commit_every < 1 or commit_idle_s < 0 or commit_within_s < 0:
            raise ValueError(f"group commit bounds must be commit_every >= 1 and non-negative delays, got "
                             f"commit_every={commit_every}, commit_idle_s={commit_idle_s}, "
                             f"commit_within_s={commit_within_s}")
        if is_postgres_url(path):
            # Every write is its own transaction holding the log's advisory lock (replicas take turns):
            # no group commit, flush() has nothing to do.
            self._db: Any = _Postgres(str(path))
            self._group = False
        else:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            # WAL: a commit appends to the log (one fsync with synchronous=FULL), no rollback-journal
            # dance; FULL (not NORMAL): a commit is on disk when COMMIT returns, so a partial served
            # after flush() survives a power loss, not only a process crash. Group commit makes the
            # fsync once per burst instead of once per message.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._group = commit_every > 1
        self._db.executescript(_SCHEMA + _IDENTITY_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(task_results)")}
        for name, decl in _V2_RESULT_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE task_results ADD COLUMN {name} {decl}")
        self._commit_every = commit_every
        self._commit_idle_s = commit_idle_s
        self._commit_within_s = commit_within_s
        self._pending = 0  # write sections in the open transaction (SQLite group commit)
        self._first = self._last = 0.0  # monotonic times of the group's first and last write
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        # Bumped when an open group was rolled back (a failed write or commit): a watcher that began
        # before must start again from the durable cursor (relay/attester.py _watch).
        self.generation = 0
        self.commits = 0  # transactions committed (group commit; for tests and benchmarks)
        # record() holds it while check() logs a refusal; on SQLite it opens and counts the group.
        self._lock = _WriteLock(self._db, self if self._group else None)
        if member is not None:
            self._check_member(member)
        self.flush()  # the member recorded on first open is durable from the start

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._cancel_timer()
            self._db.close()

    # -- group commit (SQLite) -----------------------------------------------------------------
    def _begin(self) -> None:
        """The outermost write section starts: open the group's transaction if none is open."""
        if self._db.in_transaction:
            return
        if self._pending:
            # Our open group is gone without a COMMIT of ours: SQLite rolled it back (an I/O error,
            # a full disk). Its writes are lost; refuse to go on as if they were there.
            self._lost()
            raise SigningLogError(_ROLLED_BACK)
        self._db.execute("BEGIN IMMEDIATE")

    def _written(self) -> None:
        """The outermost write section ended: count it; commit now or arm the timer."""
        if not self._db.in_transaction:
            # Nothing open: SQLite rolled the group back under us (an I/O error, a full disk).
            self._lost()
            raise SigningLogError(_ROLLED_BACK)
        now = time.monotonic()
        if self._pending == 0:
            self._first = now
        self._pending += 1
        self._last = now
        if self._pending >= self._commit_every:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller: no timer can bound the delay, commit now
            self.flush()
            return
        if self._timer is None or self._timer_loop is not loop:
            self._cancel_timer()
            self._timer = loop.call_later(min(self._commit_idle_s, self._commit_within_s), self._on_timer)
            self._timer_loop = loop

    def _on_timer(self) -> None:
        self._timer = self._timer_loop = None
        if not self._pending:
            return
        now = time.monotonic()
        due = min(self._last + self._commit_idle_s, self._first + self._commit_within_s)
        if now < due:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(due - now, self._on_timer)
            self._timer_loop = loop
            return
        try:
            self.flush()
        except SigningLogError as exc:  # a callback: the loop logs it; the watchers see `generation`
            asyncio.get_running_loop().call_exception_handler({"message": str(exc), "exception": exc})

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_loop = None

    def _lost(self) -> None:
        self._pending = 0
        self.generation += 1
        self._cancel_timer()

    @property
    def pending(self) -> int:
        """Write sections not yet committed (0 on PostgreSQL, where every write commits)."""
        return self._pending

    def flush(self) -> None:
        """Commit every pending write (fsynced, synchronous=FULL). Call it before anything signed
        (a partial, a root signature, a verdict, an attestation, a task decision) leaves the process.
        Raises SigningLogError if the commit fails: the group is then rolled back, and nothing of it
        may be served."""
        if not self._group:
            return
        with self._lock._thread:
            self._cancel_timer()
            if not self._db.in_transaction:
                if self._pending:
                    self._lost()
                    raise SigningLogError(_ROLLED_BACK)
                return
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                self._lost()
                raise SigningLogError(f"the signing log could not commit ({exc}); its uncommitted writes are "
                                      "rolled back and the watchers start again from the last durable cursor") from exc
            self._pending = 0
            self.commits += 1

    def _row(self, row: tuple | None) -> SignedEntry | None:
        if row is None:
            return None
        return SignedEntry(*row)

    def by_message(self, message_id: bytes, epoch: int) -> SignedEntry | None:
        row = self._db.execute(
            "SELECT src_domain, nonce, message_id, epoch, partial, source_tx, signed_at FROM signed "
            "WHERE message_id = ? AND epoch = ?", (message_id, epoch)
        ).fetchone()
        for table in ("attested", "verdicts"):
            if row is None:
                row = self._db.execute(
                    f"SELECT 0, 0, message_id, epoch, partial, source_tx, signed_at FROM {table} "
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

    def set_partial(self, entry: SignedEntry, partial: bytes) -> SignedEntry:
        """Fill in the partial of a message recorded as seen final but not signed yet (an empty
        `partial`: the attester signs on first request). Keeps a partial already there (a replica of
        the member may have written the same one: BLS partials are deterministic)."""
        if not partial:
            raise ValueError("set_partial needs a partial signature, got an empty one")
        with self._lock:
            self._db.execute("UPDATE signed SET partial = ? WHERE message_id = ? AND epoch = ? AND partial = ?",
                             (partial, entry.message_id, entry.epoch, b""))
            row = self._db.execute(
                "SELECT src_domain, nonce, message_id, epoch, partial, source_tx, signed_at FROM signed "
                "WHERE message_id = ? AND epoch = ?", (entry.message_id, entry.epoch)).fetchone()
        stored = self._row(row)
        if stored is None:
            raise SigningLogError(f"message 0x{entry.message_id.hex()} (epoch {entry.epoch}) is not in the signing log")
        return stored

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

    def record_verdict(self, result_id: bytes, dst_domain: int, payload: bytes, entry: SignedEntry) -> SignedEntry:
        """Insert the partial for one verdict envelope of a result (v2), to the board of `dst_domain`.
        The one already written if it is the same envelope; EquivocationError if another envelope was
        signed for this (result, destination), or another verdict payload for this result (a valid
        verdict to one board and a refusal to the other must never both be signed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT dst_domain, message_id, payload FROM verdicts WHERE result_id = ? AND epoch = ?",
                (result_id, entry.epoch)).fetchall()
            for domain, message_id, signed_payload in rows:
                if domain == dst_domain and message_id == entry.message_id:
                    existing = self._db.execute(
                        "SELECT 0, 0, message_id, epoch, partial, source_tx, signed_at FROM verdicts "
                        "WHERE result_id = ? AND dst_domain = ? AND epoch = ?",
                        (result_id, dst_domain, entry.epoch)).fetchone()
                    return SignedEntry(*existing)
                if domain == dst_domain:
                    raise EquivocationError(
                        f"result 0x{result_id.hex()} already has a verdict envelope 0x{message_id.hex()} to domain "
                        f"{dst_domain}; refusing a second one 0x{entry.message_id.hex()}")
                if bytes(signed_payload) != bytes(payload):
                    raise EquivocationError(
                        f"result 0x{result_id.hex()} already has another verdict (signed to domain {domain}); "
                        "refusing a different verdict on the same result")
            self._db.execute(
                "INSERT INTO verdicts (result_id, dst_domain, epoch, message_id, payload, partial, source_tx, signed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (result_id, dst_domain, entry.epoch, entry.message_id, payload, entry.partial, entry.source_tx,
                 entry.signed_at))
        return entry

    def root_partial(self, root: bytes, epoch: int, src_domain: int, dst_domain: int) -> bytes | None:
        """The partial already recorded for this root, lane and epoch, if any."""
        row = self._db.execute("SELECT partial FROM roots WHERE root = ? AND epoch = ? AND src_domain = ? "
                               "AND dst_domain = ?", (root, epoch, src_domain, dst_domain)).fetchone()
        return bytes(row[0]) if row is not None else None

    def over_root_limit(self, message_ids: list[bytes], epoch: int,
                        limit: int = MAX_ROOTS_PER_MESSAGE) -> list[bytes]:
        """The messages among `message_ids` already in `limit` signed roots (of `epoch`)."""
        over: list[bytes] = []
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start:start + 500]
            marks = ",".join("?" for _ in chunk)
            over += [bytes(r[0]) for r in self._db.execute(
                f"SELECT message_id FROM root_counts WHERE epoch = ? AND roots >= ? AND message_id IN ({marks})",
                (epoch, limit, *chunk)).fetchall()]
        return over

    def record_root(self, root: bytes, epoch: int, src_domain: int, dst_domain: int, message_ids: list[bytes],
                    partial: bytes, *, limit: int = MAX_ROOTS_PER_MESSAGE) -> bytes:
        """Record a signed batch root (the caller checked every message is in `signed`); returns the
        partial already written for the same root, lane and epoch if there is one. A new root that
        would put a message in more than `limit` signed roots raises RootLimitError (nothing written)."""
        with self._lock:
            known = self.root_partial(root, epoch, src_domain, dst_domain)
            if known is not None:
                return known
            over = self.over_root_limit(message_ids, epoch, limit)
            if over:
                raise RootLimitError(f"{len(over)} of the batch's messages are in {limit} signed roots already: no "
                                     "more roots over them (deliver them with the roots signed before, or singly)",
                                     over)
            self._db.execute(
                "INSERT INTO roots (root, epoch, src_domain, dst_domain, leaf_count, message_ids, partial, signed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (root, epoch, src_domain, dst_domain, len(message_ids), b"".join(message_ids), partial, time.time()))
            for message_id in message_ids:
                self._db.execute("INSERT INTO root_counts (message_id, epoch, roots) VALUES (?, ?, 1) "
                                 "ON CONFLICT (message_id, epoch) DO UPDATE SET roots = root_counts.roots + 1",
                                 (message_id, epoch))
        return partial

    def signed_roots(self) -> list[tuple[bytes, int, int, int, list[bytes]]]:
        """Every root this attester signed: (root, epoch, src_domain, dst_domain, message ids)."""
        rows = self._db.execute("SELECT root, epoch, src_domain, dst_domain, message_ids FROM roots").fetchall()
        return [(bytes(r[0]), r[1], r[2], r[3], [bytes(r[4])[i:i + 32] for i in range(0, len(r[4]), 32)])
                for r in rows]

    def signed_verdict(self, result_id: bytes, epoch: int) -> bytes | None:
        """The verdict payload this attester signed for a result under `epoch`, if any."""
        row = self._db.execute("SELECT payload FROM verdicts WHERE result_id = ? AND epoch = ? LIMIT 1",
                               (result_id, epoch)).fetchone()
        return bytes(row[0]) if row else None

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
                        block_time: int | None, attestation_id: bytes | None, version: int = 1) -> ResultRecord:
        """Record a final TASK_RESULT as pending (unless already known) and return its record."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO task_results (result_id, request_id, envelope, source_tx, block_time, "
                "attestation_id, status, method, reason, updated_at, version) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, '', ?, ?)",
                (result_id, request_id, envelope, source_tx, block_time, attestation_id, time.time(), version))
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
        found = self._results("attestation_id = ? OR serving_attestation_id = ?", (attestation_id, attestation_id))
        return found[0] if found else None

    def results_for_request(self, request_id: bytes) -> list[ResultRecord]:
        return self._results("request_id = ?", (request_id,))

    def pending_results(self) -> list[ResultRecord]:
        return self._results("status = 'pending'", ())

    def set_result_status(self, result_id: bytes, status: str, reason: str, method: int | None) -> None:
        with self._lock:
            self._db.execute("UPDATE task_results SET status = ?, reason = ?, method = ?, updated_at = ? "
                             "WHERE result_id = ?", (status, reason, method, time.time(), result_id))

    def set_verdict(self, result_id: bytes, verdict: int, refusal: int, payload: bytes, requester_id: bytes,
                    serving_id: bytes, reason: str, method: int) -> None:
        """A v2 result's verdict is signed: its two envelope ids, the verdict and the payload."""
        with self._lock:
            self._db.execute(
                "UPDATE task_results SET status = 'attested', verdict = ?, refusal = ?, verdict_payload = ?, "
                "attestation_id = ?, serving_attestation_id = ?, reason = ?, method = ?, updated_at = ? "
                "WHERE result_id = ?",
                (verdict, refusal, payload, requester_id, serving_id, reason, method, time.time(), result_id))

    def refusals(self) -> list[tuple[int, int, bytes, str]]:
        return [tuple(r) for r in self._db.execute("SELECT src_domain, nonce, message_id, reason FROM refusals")]

    def get_cursor(self, name: str) -> str | None:
        row = self._db.execute("SELECT cursor FROM cursors WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_cursor(self, name: str, cursor: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO cursors VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor",
                             (name, cursor))

    # -- whose log, for which chains ------------------------------------------------------------
    def _check_member(self, member: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('member', ?)", (str(member),))
            row = self._db.execute("SELECT value FROM meta WHERE key = 'member'").fetchone()
        if row[0] != str(member):
            self.close()
            raise SigningLogError(f"this signing log belongs to committee member {row[0]}, not member {member}: "
                                  "give each member its own [attester] db (a file, or a database per member)")

    def chain_identity(self, domain: int) -> str | None:
        """The identity (ChainIdentity.encode()) of the chain this log's cursor and signatures for
        source `domain` were written for; None before the first start that recorded it."""
        row = self._db.execute("SELECT identity FROM chains WHERE domain = ?", (domain,)).fetchone()
        return row[0] if row else None

    def set_chain_identity(self, domain: int, identity: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO chains (domain, identity) VALUES (?, ?) ON CONFLICT(domain) DO UPDATE "
                             "SET identity = excluded.identity", (domain, identity))

    def forget_chain(self, domain: int) -> int:
        """`relay reset-chain`: drop the identity, the watch cursor and the signatures of source
        `domain` (a reset chain numbers its messages from 0 again: without this, its first messages
        would be refused as equivocation). Returns the number of signatures dropped."""
        with self._lock:
            self._db.execute("DELETE FROM chains WHERE domain = ?", (domain,))
            self._db.execute("DELETE FROM cursors WHERE name = ?", (f"watch:{domain}",))
            return self._db.execute("DELETE FROM signed WHERE src_domain = ?", (domain,)).rowcount
