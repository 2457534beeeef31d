"""The relayer's durable state: every message is a pending operation whose stage, reason and next
attempt live here, so a killed relayer resumes exactly where it was.

Two engines behind one interface (relay.database): an SQLite file, the embedded default, or a
PostgreSQL database that several relayer replicas share. Replicas split the work by *leases*: `due`
hands a message to one replica (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two replicas asking at
once get different messages) until `lease_s` after its next attempt; the replica's own writes keep
it, so a message stays with one replica from observation to confirmation. A replica that dies stops
renewing its leases; once they expire another replica takes its messages over (counted in
`takeovers`), and the gateways' replay protection makes a second submission harmless. Writes of a
replica whose lease was taken over are dropped (it is no longer responsible for the message).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

import math
import os
import socket

import aiosqlite

from relay.database import Database, SqliteDatabase, open_database, redact
from relay.envelope import Envelope
from relay.log import get_logger
from relay.protocol import COMMITTEE_DOMAIN


class Stage(str, enum.Enum):
    OBSERVED = "observed"  # seen final on the source; collecting partial signatures
    READY = "ready"  # combined signature verified; to be submitted
    SUBMITTED = "submitted"  # destination transaction sent; waiting for finality
    CONFIRMED = "confirmed"  # delivered (by us or by another relayer)
    DEAD = "dead"  # retries exhausted: visible in `relay status`, retryable with `relay retry`


ACTIVE_STAGES = (Stage.OBSERVED, Stage.READY, Stage.SUBMITTED)


class RetryReason(str, enum.Enum):
    """Why a message is not done yet (or why it is dead): a closed set, stored in the `reason_code`
    column and used as the metrics label, in `relay status` and in the dead letter. The values are
    stored: never rename one (add a new one instead). The free text beside it (`reason`) is the
    detail for people."""

    WAITING_FOR_SIGNATURES = "waiting_for_signatures"  # fewer than t valid partials so far
    REFUSED_BY_MEMBERS = "refused_by_members"  # members checked the message and will not sign it
    NO_ROUTE = "no_route"  # no adapter for the destination domain: dead at once
    SUBMIT_FAILED = "submit_failed"  # sending the delivery transaction failed
    AWAITING_RESULT = "awaiting_result"  # an attestation waits for its result to land (not a retry)
    AWAITING_FINALITY = "awaiting_finality"  # submitted, not final yet (not a retry)
    NOT_FINAL_IN_TIME = "not_final_in_time"  # submitted but not final in time: resubmitted
    DELIVERY_REVERTED = "delivery_reverted"  # the delivery reverted: re-prepared
    DELIVERY_DROPPED = "delivery_dropped"  # the delivery vanished (e.g. expired blockhash): resubmitted
    STEP_FAILED = "step_failed"  # a step raised (an RPC outage past the adapter's retries, a bug)
    MANUAL_RETRY = "manual_retry"  # `relay retry` / POST /v1/messages/<id>/retry
    HANDLER_FAILED = "handler_failed"  # delivered, but the receiver's handler failed (EVM status 2): re-run it
    REFUSED_UNPAID = "refused_unpaid"  # the relayer's payment policy refused it (relay/policy.py): dead at once

    @classmethod
    def stored(cls, value: str) -> "RetryReason | None":
        """The reason a row holds: None for none ('' — rows written before reasons had codes, or
        done) and for a value this version does not know (a newer relayer's)."""
        try:
            return cls(value) if value else None
        except ValueError:
            return None

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id      BLOB PRIMARY KEY,
    src_domain      INTEGER NOT NULL,
    nonce           INTEGER NOT NULL,
    dst_domain      INTEGER NOT NULL,
    kind            INTEGER NOT NULL,
    envelope        BLOB NOT NULL,
    source_tx       TEXT NOT NULL,
    stage           TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    reason_code     TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    epoch           INTEGER,
    signature       BLOB,
    dest_tx         TEXT,
    observed_at     REAL NOT NULL,
    signed_at       REAL,
    submitted_at    REAL,
    confirmed_at    REAL,
    lease_owner     TEXT,
    lease_until     REAL,
    leases          INTEGER NOT NULL DEFAULT 0,
    takeovers       INTEGER NOT NULL DEFAULT 0,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (stage, next_attempt_at);
-- One message per (source, nonce), except for the committee (domain 0): its PROOF_ATTESTATIONs all
-- carry nonce 0 and are told apart by their payload.
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_nonce ON messages (src_domain, nonce) WHERE src_domain != 0;
-- The explorer finds messages by the transaction that emitted them (a result and its attestation share one).
CREATE INDEX IF NOT EXISTS messages_by_source_tx ON messages (source_tx);
CREATE TABLE IF NOT EXISTS cursors (
    name       TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at REAL NOT NULL
);
-- The identity of the chain each source domain's cursor and messages belong to (chain id + genesis).
CREATE TABLE IF NOT EXISTS chains (
    domain     INTEGER PRIMARY KEY,
    identity   TEXT NOT NULL,
    updated_at REAL NOT NULL
);
-- Every delivery transaction a replica sent (what `lease_held` says: whether it still held the
-- message's lease when it recorded the transaction).
CREATE TABLE IF NOT EXISTS submissions (
    message_id BLOB NOT NULL,
    replica    TEXT NOT NULL,
    tx         TEXT NOT NULL,
    lease_held INTEGER NOT NULL,
    at         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS submissions_by_message ON submissions (message_id);
-- Batches (docs/PROTOCOL.md "Batch attestations"): the committee's signature over a lane's root and
-- the message ids in tree order; each member's (root, index, proof), so a restarted relayer resumes a
-- half-delivered batch. A message re-batched later (its delivery reverted) points at its newest root.
CREATE TABLE IF NOT EXISTS batches (
    root        BLOB PRIMARY KEY,
    src_domain  INTEGER NOT NULL,
    dst_domain  INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    signature   BLOB NOT NULL,
    message_ids BLOB NOT NULL,
    created_at  REAL NOT NULL,
    closed_at   REAL
);
CREATE TABLE IF NOT EXISTS batch_members (
    message_id BLOB PRIMARY KEY,
    root       BLOB NOT NULL,
    leaf_index INTEGER NOT NULL,
    proof      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_members_by_root ON batch_members (root);
-- Delivery receipts on the destination whose rent may come back (Solana CloseReceipt): one row per
-- confirmed message the relayer looked at, with what the receipt account said (its payer, the
-- delivery time on the program's clock, its lamports). state: open (this relayer's key paid it:
-- to close once the retention passed), closed (by us or, closed_by 'other', by the receiver),
-- foreign (another key paid it), not_closable (the program keeps it: the task board's, the
-- committee's), gone (no receipt account when first looked at). Stores from before this table get
-- it on open (CREATE TABLE IF NOT EXISTS), and their confirmed messages are looked at from the start.
CREATE TABLE IF NOT EXISTS receipts (
    message_id      BLOB PRIMARY KEY,
    dst_domain      INTEGER NOT NULL,
    envelope        BLOB NOT NULL,
    payer           BLOB NOT NULL,
    delivered_at    REAL NOT NULL,
    lamports        INTEGER NOT NULL,
    state           TEXT NOT NULL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    reason          TEXT NOT NULL DEFAULT '',
    close_tx        TEXT,
    closed_by       TEXT,
    closed_at       REAL,
    lease_owner     TEXT,
    lease_until     REAL,
    recorded_at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_due ON receipts (state, dst_domain, next_attempt_at);
CREATE INDEX IF NOT EXISTS messages_by_confirmed ON messages (confirmed_at);
"""

_LEASE_COLUMNS = {"lease_owner": "TEXT", "lease_until": "REAL", "leases": "INTEGER NOT NULL DEFAULT 0",
                  "takeovers": "INTEGER NOT NULL DEFAULT 0"}
TERMINAL_STAGES = (Stage.CONFIRMED, Stage.DEAD)
_TERMINAL_VALUES = frozenset(s.value for s in TERMINAL_STAGES)
DEFAULT_LEASE_S = 60.0
_IN_CHUNK = 500  # ids per `IN (...)` list (both engines allow 32,766 parameters per statement)
_INSERT_CHUNK = 200  # rows per multi-row INSERT (11 parameters each)
_OBSERVED_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, '', '', 0, ?, NULL, NULL, NULL, ?, NULL, NULL, NULL, ?)"
_SET_CURSOR = ("INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?) "
               "ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at")

log = get_logger("store")


@dataclass(frozen=True, slots=True)
class MessageRecord:
    message_id: bytes
    src_domain: int
    nonce: int
    dst_domain: int
    kind: int
    envelope: bytes
    source_tx: str
    stage: Stage
    reason: str  # the detail, for people
    reason_code: RetryReason | None  # what kind of reason, for metrics, status and queries
    attempts: int
    next_attempt_at: float
    epoch: int | None
    signature: bytes | None
    dest_tx: str | None
    observed_at: float
    signed_at: float | None
    submitted_at: float | None
    confirmed_at: float | None
    updated_at: float

    @property
    def decoded(self) -> Envelope:
        return Envelope.decode(self.envelope)


_COLUMNS = ", ".join(MessageRecord.__slots__)


@dataclass(frozen=True, slots=True)
class StepWrite:
    """One message's step result, to write with others in one transaction (`Store.write_steps`);
    made by `Store.advance_write`, `retry_write`, `postpone_write`."""

    message_id: bytes
    assignments: dict[str, object]  # column -> value
    counting: bool = False  # count an attempt
    submission: str | None = None  # a delivery transaction sent: recorded in `submissions`
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Submission:
    message_id: bytes
    replica: str
    tx: str
    lease_held: bool
    at: float


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a message and until when (None: nobody), with how often it was handed out."""

    owner: str | None
    until: float | None
    leases: int
    takeovers: int  # times a replica took it over after another's lease expired


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A lane's batch whose root the committee signed (relay.batch.Batch for its tree)."""

    root: bytes
    src_domain: int
    dst_domain: int
    epoch: int
    signature: bytes
    message_ids: tuple[bytes, ...]
    created_at: float
    closed_at: float | None


@dataclass(frozen=True, slots=True)
class BatchMember:
    """Where a message sits in its (newest) batch."""

    message_id: bytes
    root: bytes
    index: int
    proof: tuple[bytes, ...]


class ReceiptState(str, enum.Enum):
    """What the relayer knows of a destination receipt (the `receipts` table). Stored: never rename."""

    OPEN = "open"  # this relayer's key paid its rent: closed once the retention has passed
    CLOSED = "closed"  # closed, its rent back with its payer (closed_by: "us" or "other")
    FOREIGN = "foreign"  # another key paid its rent: that key's to close
    NOT_CLOSABLE = "not_closable"  # the program keeps it (deliveries to the task board, committee messages)
    GONE = "gone"  # no receipt account when first looked at


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A delivery receipt the relayer recorded (relay.pipeline's receipt closing)."""

    message_id: bytes
    dst_domain: int
    envelope: bytes
    payer: bytes
    delivered_at: float
    lamports: int
    state: ReceiptState
    next_attempt_at: float
    attempts: int
    reason: str
    close_tx: str | None
    closed_by: str | None
    closed_at: float | None

    @property
    def decoded(self) -> Envelope:
        return Envelope.decode(self.envelope)


_RECEIPT_COLUMNS = ", ".join(ReceiptRecord.__slots__)


@dataclass(frozen=True, slots=True)
class NewReceipt:
    """What a receipt account said, to record (`Store.add_receipts`)."""

    message_id: bytes
    dst_domain: int
    envelope: bytes
    payer: bytes
    delivered_at: float
    lamports: int
    state: ReceiptState


def _receipt(row: dict) -> ReceiptRecord:
    values = {k: row[k] for k in ReceiptRecord.__slots__}
    values.update(message_id=bytes(values["message_id"]), envelope=bytes(values["envelope"]),
                  payer=bytes(values["payer"]), state=ReceiptState(values["state"]))
    return ReceiptRecord(**values)


def _split32(raw: bytes) -> tuple[bytes, ...]:
    raw = bytes(raw)
    return tuple(raw[i:i + 32] for i in range(0, len(raw), 32))


def _record(row: dict) -> MessageRecord:
    values = {k: row[k] for k in MessageRecord.__slots__}
    values["stage"] = Stage(values["stage"])
    values["reason_code"] = RetryReason.stored(values["reason_code"])
    return MessageRecord(**values)


def default_replica_name(dialect: str = "postgresql") -> str:
    """PostgreSQL: host:pid — unique among live processes; give replicas stable names (`[relayer]
    replica`) so a restarted one takes its own leases back at once instead of waiting for them to
    expire. SQLite: the host's name — an SQLite store is one relayer's (replicas share PostgreSQL), so
    a relayer restarted after a crash takes its own leases back at once instead of leaving the
    messages it was delivering idle for `lease_s`."""
    if dialect == "sqlite":
        return f"{socket.gethostname()}:sqlite"
    return f"{socket.gethostname()}:{os.getpid()}"


async def _sqlite_tables(db: Database) -> set[str]:
    return {r["name"] for r in await db.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def _sqlite_columns(db: Database, table: str) -> list[str]:
    return [r["name"] for r in await db.fetch(f"PRAGMA table_info({table})")]


async def _migrate_unique_nonce(db: Database) -> None:
    """Stores written before proof attestations had UNIQUE (src_domain, nonce) on the table itself;
    move the old table aside so the schema recreates it with the partial index instead."""
    sql = await db.fetchval("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
    if sql is not None and "UNIQUE (src_domain, nonce)" in sql:
        await db.execute("ALTER TABLE messages RENAME TO messages_v0")
        await db.execute("DROP INDEX IF EXISTS messages_due")


async def _add_columns(db: Database) -> None:
    """Stores written before retry reasons were a closed set have no reason_code column, stores from
    before leases no lease columns: add them (empty for the existing rows)."""
    columns = await _sqlite_columns(db, "messages")
    if "reason_code" not in columns:
        await db.execute("ALTER TABLE messages ADD COLUMN reason_code TEXT NOT NULL DEFAULT ''")
    for name, kind in _LEASE_COLUMNS.items():
        if name not in columns:
            await db.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")


async def _finish_migration(db: Database) -> None:
    # Also completes a migration a crash interrupted: the copy is idempotent.
    if "messages_v0" not in await _sqlite_tables(db):
        return
    old = set(await _sqlite_columns(db, "messages_v0"))
    columns = ", ".join(c for c in MessageRecord.__slots__ if c in old)  # the old table may predate some
    await db.execute(f"INSERT OR IGNORE INTO messages ({columns}) SELECT {columns} FROM messages_v0")
    await db.execute("DROP TABLE messages_v0")
    await db.executescript(_SCHEMA)  # indexes that went with the old table (an interrupted run)


async def open_durable(path: str | Path) -> aiosqlite.Connection:
    """An SQLite connection for a daemon's progress (rows as aiosqlite.Row), the folder made if
    needed. WAL + synchronous=FULL: a committed stage change survives a killed process or power loss;
    busy_timeout lets a second reader (`relay status`) wait instead of failing."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(str(path))
    db.row_factory = aiosqlite.Row
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA busy_timeout=5000")
    return db


class Store:
    """The relayer's pipeline state in `db` (an SQLite path or a PostgreSQL URL).

    `replica` names this relayer among those sharing the database (leases are held in its name);
    `lease_s` is how long past a message's next attempt its lease lasts without being renewed (longer
    than any one step takes); `lease_batch` caps how many messages one `due` call leases, so replicas
    asking one after another share a burst instead of the first taking it all."""

    def __init__(self, db: Database, *, replica: str | None = None, lease_s: float = DEFAULT_LEASE_S,
                 lease_batch: int | None = None, location: str = "") -> None:
        self._db = db
        self.replica = replica or default_replica_name(db.dialect)
        self.lease_s = lease_s
        self.lease_batch = lease_batch
        self.location = location

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @classmethod
    async def open(cls, db: str | Path, *, replica: str | None = None, lease_s: float = DEFAULT_LEASE_S,
                   lease_batch: int | None = None) -> "Store":
        database = await open_database(db)
        try:
            if isinstance(database, SqliteDatabase):
                await _migrate_unique_nonce(database)
                await database.executescript(_SCHEMA)
                await _add_columns(database)
                await _finish_migration(database)
            else:
                await database.executescript(_SCHEMA)
        except BaseException:
            await database.close()
            raise
        return cls(database, replica=replica, lease_s=lease_s, lease_batch=lease_batch, location=redact(db))

    async def close(self) -> None:
        """Give this replica's leases back (another replica may go on at once), then close."""
        try:
            await self._db.execute("UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                                   self.replica)
        finally:
            await self._db.close()

    async def add_observed(self, envelope: Envelope, source_tx: str, now: float | None = None) -> bool:
        """Record a newly observed message; False if it was already known (to any replica)."""
        now = time.time() if now is None else now
        changed = await self._db.execute(
            f"INSERT INTO messages ({_COLUMNS}) VALUES {_OBSERVED_ROW} ON CONFLICT DO NOTHING",
            envelope.message_id, envelope.src_domain, envelope.nonce, envelope.dst_domain, envelope.kind,
            envelope.encode(), source_tx, Stage.OBSERVED.value, now, now, now,
        )
        return changed == 1

    async def add_observed_many(self, observed: "list[tuple[Envelope, str]]", *, cursor: tuple[str, str] | None = None,
                                now: float | None = None) -> list[bool]:
        """Record newly observed messages (envelope, source tx) and, with `cursor` (name, value), the
        watch cursor past them, all in ONE transaction: the cursor is never committed without the
        observations it covers, and a crash part way commits nothing (the watcher then resumes from
        the old cursor and sees them again). Returns, per message, whether it was new (False: known
        already, to any replica)."""
        now = time.time() if now is None else now
        inserted: set[bytes] = set()
        async with self._db.transaction() as tx:
            for start in range(0, len(observed), _INSERT_CHUNK):
                chunk = observed[start:start + _INSERT_CHUNK]
                args: list[object] = []
                for envelope, source_tx in chunk:
                    args += [envelope.message_id, envelope.src_domain, envelope.nonce, envelope.dst_domain,
                             envelope.kind, envelope.encode(), source_tx, Stage.OBSERVED.value, now, now, now]
                rows = ", ".join([_OBSERVED_ROW] * len(chunk))
                found = await tx.fetch(f"INSERT INTO messages ({_COLUMNS}) VALUES {rows} ON CONFLICT DO NOTHING "
                                       "RETURNING message_id", *args)
                inserted.update(bytes(r["message_id"]) for r in found)
            if cursor is not None:
                await tx.execute(_SET_CURSOR, cursor[0], cursor[1], now)
        fresh: list[bool] = []
        for envelope, _ in observed:  # (a message observed twice in one call is new once)
            fresh.append(envelope.message_id in inserted)
            inserted.discard(envelope.message_id)
        return fresh

    async def get(self, message_id: bytes) -> MessageRecord | None:
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM messages WHERE message_id = ?", message_id)
        return _record(row) if row else None

    async def by_source_tx(self, source_tx: str, limit: int = 100) -> list[MessageRecord]:
        """Messages emitted by one source transaction (an EVM hash in any case, or a Solana
        signature), in nonce order; a TASK_RESULT's derived PROOF_ATTESTATION comes with it."""
        text = source_tx.strip()
        # EVM hashes are stored as the node wrote them (lowercase hex); base58 is case-sensitive.
        candidates = (text, text.lower()) if text[:2].lower() == "0x" else (text,)
        marks = ", ".join("?" for _ in candidates)
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE source_tx IN ({marks}) ORDER BY src_domain = 0, nonce LIMIT ?",
            *candidates, limit)
        return [_record(r) for r in rows]

    async def find_prefix(self, hex_prefix: str) -> list[MessageRecord]:
        prefix = hex_prefix.lower().removeprefix("0x")
        as_hex = "lower(hex(message_id))" if self.dialect == "sqlite" else "encode(message_id, 'hex')"
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM messages WHERE {as_hex} LIKE ? LIMIT 5", prefix + "%")
        return [_record(r) for r in rows]

    async def get_by_nonce(self, src_domain: int, nonce: int) -> MessageRecord | None:
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM messages WHERE src_domain = ? AND nonce = ?",
                                      src_domain, nonce)
        return _record(row) if row else None

    async def due(self, stage: Stage, now: float | None = None, limit: int = 100) -> list[MessageRecord]:
        """The messages of `stage` whose next attempt has come, leased to this replica: none of them
        is handed to another replica until its lease expires. A message leased to another replica
        is left alone while that lease lasts; this replica's own leases are due again as usual."""
        now = time.time() if now is None else now
        if self.lease_batch is not None:
            limit = min(limit, self.lease_batch)
        lock = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        rows = await self._db.fetch(
            "WITH picked AS (SELECT message_id FROM messages WHERE stage = ? AND next_attempt_at <= ? "
            "AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?) "
            f"ORDER BY next_attempt_at LIMIT ?{lock}) "
            "UPDATE messages SET lease_owner = ?, lease_until = ?, leases = leases + 1, "
            "takeovers = takeovers + CASE WHEN lease_owner IS NOT NULL AND lease_owner <> ? THEN 1 ELSE 0 END "
            f"WHERE message_id IN (SELECT message_id FROM picked) RETURNING {_COLUMNS}",
            stage.value, now, self.replica, now, limit, self.replica, now + self.lease_s, self.replica,
        )
        return sorted((_record(r) for r in rows), key=lambda r: r.next_attempt_at)

    async def next_due_at(self) -> float | None:
        """When the next active message this replica could take is due (another replica's leased
        messages count from when their lease expires)."""
        marks = ",".join("?" for _ in ACTIVE_STAGES)
        return await self._db.fetchval(
            "SELECT min(CASE WHEN lease_owner IS NULL OR lease_owner = ? OR lease_until IS NULL "
            "OR lease_until <= next_attempt_at THEN next_attempt_at ELSE lease_until END) "
            f"FROM messages WHERE stage IN ({marks})", self.replica, *[s.value for s in ACTIVE_STAGES])

    # -- a step's result: one message's, or many in one transaction (StepWrite) ------------------
    def _step_sql(self, write: "StepWrite") -> tuple[str, list[object]]:
        """The UPDATE of one step write, and its arguments: written only while this replica holds
        the message (or nobody does); the lease is kept until `lease_s` past the next attempt, and
        given up at a terminal stage. Writes of the same shape share the SQL text (executemany)."""
        assignments = write.assignments
        stage = assignments.get("stage")
        next_at = assignments.get("next_attempt_at")
        terminal = stage in _TERMINAL_VALUES or (isinstance(next_at, float) and math.isinf(next_at))
        sets = [f"{k} = ?" for k in assignments]
        values = list(assignments.values())
        if write.counting:
            sets.append("attempts = attempts + 1")
        if terminal:
            sets.append("lease_owner = NULL, lease_until = NULL")
        elif isinstance(next_at, (int, float)):
            sets.append("lease_until = CASE WHEN lease_owner IS NULL THEN NULL ELSE CAST(? AS DOUBLE PRECISION) END")
            values.append(float(next_at) + self.lease_s)
        sql = f"UPDATE messages SET {', '.join(sets)} WHERE message_id = ? AND (lease_owner IS NULL OR lease_owner = ?)"
        return sql, [*values, write.message_id, self.replica]

    def _lease_lost(self, write: "StepWrite") -> None:
        log.warning("lease lost: another replica took this message over; its result is left to that replica",
                    msg_id=write.message_id.hex(), replica=self.replica, write=sorted(write.assignments))

    async def _step_write(self, message_id: bytes, assignments: dict[str, object], *, counting: bool = False,
                          tx: Database | None = None) -> bool:
        """One step write on its own (one UPDATE, committed by itself unless `tx` is given)."""
        write = StepWrite(message_id, assignments, counting)
        sql, args = self._step_sql(write)
        changed = await (tx or self._db).execute(sql, *args)
        if not changed:
            self._lease_lost(write)
        return changed == 1

    async def write_steps(self, writes: "list[StepWrite]") -> list[bool]:
        """Many step writes (of many messages, any stages) in ONE transaction: all of them are
        committed, or none (a crash or an error part way leaves every message where it was). The
        same rule as a single write: a message this replica no longer holds is left alone (False at
        its place in the answer, and a warning); a submission (`dest_tx`) is recorded in
        `submissions` either way, with whether the lease was held. Writes of the same shape go as one
        executemany; the messages still held are read first in the transaction (locked FOR UPDATE on
        PostgreSQL, so no other replica's `due` takes one over in between; SQLite's write lock is
        held from the start)."""
        if not writes:
            return []
        if len(writes) == 1 and writes[0].submission is None:
            only = writes[0]
            return [await self._step_write(only.message_id, only.assignments, counting=only.counting)]
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        async with self._db.transaction() as tx:
            held: set[bytes] = set()
            ids = list(dict.fromkeys(w.message_id for w in writes))
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start:start + _IN_CHUNK]
                marks = ",".join("?" for _ in chunk)
                rows = await tx.fetch(f"SELECT message_id FROM messages WHERE message_id IN ({marks}) "
                                      f"AND (lease_owner IS NULL OR lease_owner = ?) ORDER BY message_id{lock}",
                                      *chunk, self.replica)  # (rows locked in one order: no deadlock between writers)
                held.update(bytes(r["message_id"]) for r in rows)
            shapes: dict[str, list[list[object]]] = {}
            for write in writes:
                if write.message_id in held:
                    sql, args = self._step_sql(write)
                    shapes.setdefault(sql, []).append(args)
            if len(ids) == len(writes):
                for sql, rows_args in shapes.items():
                    await tx.executemany(sql, rows_args)
            else:  # a message written twice: in the order given (grouping by shape could swap them)
                for write in writes:
                    if write.message_id in held:
                        sql, args = self._step_sql(write)
                        await tx.execute(sql, *args)
            submissions = [(w.message_id, self.replica, w.submission, int(w.message_id in held), w.at)
                           for w in writes if w.submission]
            if submissions:
                await tx.executemany("INSERT INTO submissions (message_id, replica, tx, lease_held, at) "
                                     "VALUES (?, ?, ?, ?, ?)", submissions)
        for write in writes:
            if write.message_id not in held:
                self._lease_lost(write)
        return [w.message_id in held for w in writes]

    def advance_write(self, message_id: bytes, stage: Stage, *, now: float | None = None,
                      **fields: object) -> "StepWrite":
        """The write of `advance` (for `write_steps`)."""
        now = time.time() if now is None else now
        stamp = {Stage.READY: "signed_at", Stage.SUBMITTED: "submitted_at", Stage.CONFIRMED: "confirmed_at"}.get(stage)
        if stamp and stamp not in fields:
            fields[stamp] = now
        assignments = {"stage": stage.value, "reason": "", "reason_code": "", "attempts": 0,
                       "next_attempt_at": float(now), "updated_at": now}
        assignments.update(fields)
        dest_tx = fields.get("dest_tx") if stage is Stage.SUBMITTED else None
        return StepWrite(message_id, assignments, submission=str(dest_tx) if dest_tx else None, at=now)

    def retry_write(self, message_id: bytes, code: RetryReason, reason: str, next_attempt_at: float, *,
                    now: float | None = None, stage: Stage | None = None) -> "StepWrite":
        """The write of `retry_later` (for `write_steps`)."""
        now = time.time() if now is None else now
        assignments: dict[str, object] = {"reason": reason, "reason_code": code.value,
                                          "next_attempt_at": float(next_attempt_at), "updated_at": now}
        if stage is not None:
            assignments["stage"] = stage.value
        return StepWrite(message_id, assignments, counting=True, at=now)

    def postpone_write(self, message_id: bytes, code: RetryReason, reason: str, next_attempt_at: float, *,
                       now: float | None = None) -> "StepWrite":
        """The write of `postpone` (for `write_steps`)."""
        now = time.time() if now is None else now
        return StepWrite(message_id, {"reason": reason, "reason_code": code.value,
                                      "next_attempt_at": float(next_attempt_at), "updated_at": now}, at=now)

    async def advance(self, message_id: bytes, stage: Stage, *, now: float | None = None, **fields: object) -> bool:
        """Move to `stage` (resetting attempts and reason), setting any extra columns given. False
        when another replica holds the message now (nothing written). A submission (`dest_tx`) is
        recorded in `submissions` either way (in the same transaction)."""
        return (await self.write_steps([self.advance_write(message_id, stage, now=now, **fields)]))[0]

    async def retry_later(self, message_id: bytes, code: RetryReason, reason: str, next_attempt_at: float, *,
                          now: float | None = None, stage: Stage | None = None) -> bool:
        """Count an attempt and look again at `next_attempt_at` (never, with inf: the dead letter)."""
        return (await self.write_steps([self.retry_write(message_id, code, reason, next_attempt_at, now=now,
                                                         stage=stage)]))[0]

    async def postpone(self, message_id: bytes, code: RetryReason, reason: str, next_attempt_at: float) -> bool:
        """Look again later without counting an attempt (e.g. waiting for finality)."""
        return (await self.write_steps([self.postpone_write(message_id, code, reason, next_attempt_at)]))[0]

    async def force_retry(self, message_id: bytes, now: float | None = None) -> MessageRecord | None:
        """Operator's `relay retry`: make the message due now, for whichever replica takes it first;
        a dead one restarts from observed."""
        record = await self.get(message_id)
        if record is None:
            return None
        now = time.time() if now is None else now
        stage = Stage.OBSERVED if record.stage is Stage.DEAD else record.stage
        if record.stage is Stage.CONFIRMED:
            return record
        await self._db.execute(
            "UPDATE messages SET stage = ?, attempts = 0, next_attempt_at = ?, updated_at = ?, reason = ?, "
            "reason_code = ?, lease_owner = NULL, lease_until = NULL WHERE message_id = ?",
            stage.value, float(now), now, f"manual retry (was: {record.reason or record.stage.value})",
            RetryReason.MANUAL_RETRY.value, message_id)
        return await self.get(message_id)

    async def counts(self) -> dict[tuple[Stage, RetryReason | None], int]:
        """Messages by stage and reason code, for metrics and `relay status`."""
        counts: dict[tuple[Stage, RetryReason | None], int] = {}
        for row in await self._db.fetch("SELECT stage, reason_code, count(*) AS n FROM messages GROUP BY stage, reason_code"):
            key = (Stage(row["stage"]), RetryReason.stored(row["reason_code"]))
            counts[key] = counts.get(key, 0) + row["n"]  # (codes this version does not know count as none)
        return counts

    async def listing(self, limit: int = 50) -> list[MessageRecord]:
        """Unfinished first, oldest (most stuck) first; then the latest confirmed."""
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM messages ORDER BY stage = 'confirmed', "
            "CASE WHEN stage = 'confirmed' THEN -confirmed_at ELSE observed_at END LIMIT ?", limit)
        return [_record(r) for r in rows]

    async def _nonces(self, src_domain: int) -> list[int]:
        rows = await self._db.fetch("SELECT nonce FROM messages WHERE src_domain = ? ORDER BY nonce", src_domain)
        return [r["nonce"] for r in rows]

    async def highest_contiguous_nonce(self, src_domain: int) -> int:
        """The largest n such that nonces 0..n are all known (-1 if nonce 0 is missing)."""
        expected = 0
        for nonce in await self._nonces(src_domain):
            if nonce != expected:
                break
            expected += 1
        return expected - 1

    async def missing_nonces(self, src_domain: int, limit: int = 100) -> list[int]:
        """Nonces below the highest seen that were never observed (gaps to re-observe)."""
        if src_domain == COMMITTEE_DOMAIN:
            return []  # attestations all use nonce 0: there is no sequence
        missing: list[int] = []
        expected = 0
        for nonce in await self._nonces(src_domain):
            while expected < nonce and len(missing) < limit:
                missing.append(expected)
                expected += 1
            expected = nonce + 1
        return missing

    async def get_cursor(self, name: str) -> str | None:
        return await self._db.fetchval("SELECT cursor FROM cursors WHERE name = ?", name)

    async def set_cursor(self, name: str, cursor: str) -> None:
        await self._db.execute(_SET_CURSOR, name, cursor, time.time())

    # -- batches ---------------------------------------------------------------------------------
    async def add_batch(self, root: bytes, src_domain: int, dst_domain: int, epoch: int, signature: bytes,
                        message_ids: list[bytes], proofs: list[list[bytes]]) -> None:
        """Record a signed batch and every member's place in it, in one transaction (before the
        members move on, so a crash in between leaves them where they were)."""
        now = time.time()
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO batches (root, src_domain, dst_domain, epoch, signature, message_ids, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (root) DO UPDATE SET epoch = excluded.epoch, "
                "signature = excluded.signature, closed_at = NULL",
                root, src_domain, dst_domain, epoch, signature, b"".join(message_ids), now)
            await tx.executemany(
                "INSERT INTO batch_members (message_id, root, leaf_index, proof) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (message_id) DO UPDATE SET root = excluded.root, leaf_index = excluded.leaf_index, "
                "proof = excluded.proof",
                [(message_id, root, index, b"".join(proof))
                 for index, (message_id, proof) in enumerate(zip(message_ids, proofs))])

    async def batch_members(self, message_ids: list[bytes]) -> dict[bytes, BatchMember]:
        """The batch membership of those of `message_ids` that are in one."""
        if not message_ids:
            return {}
        marks = ",".join("?" for _ in message_ids)
        rows = await self._db.fetch(
            f"SELECT message_id, root, leaf_index, proof FROM batch_members WHERE message_id IN ({marks})", *message_ids)
        return {bytes(r["message_id"]): BatchMember(bytes(r["message_id"]), bytes(r["root"]), r["leaf_index"],
                                                    _split32(r["proof"])) for r in rows}

    async def batch(self, root: bytes) -> StoredBatch | None:
        row = await self._db.fetchrow("SELECT root, src_domain, dst_domain, epoch, signature, message_ids, created_at, "
                                      "closed_at FROM batches WHERE root = ?", root)
        if row is None:
            return None
        return StoredBatch(bytes(row["root"]), row["src_domain"], row["dst_domain"], row["epoch"],
                           bytes(row["signature"]), _split32(row["message_ids"]), row["created_at"], row["closed_at"])

    async def envelopes(self, message_ids: list[bytes]) -> dict[bytes, bytes]:
        marks = ",".join("?" for _ in message_ids)
        rows = await self._db.fetch(f"SELECT message_id, envelope FROM messages WHERE message_id IN ({marks})",
                                    *message_ids)
        return {bytes(r["message_id"]): bytes(r["envelope"]) for r in rows}

    async def finished_batches(self, limit: int = 100) -> list[StoredBatch]:
        """Open batches none of whose current members is still active (all confirmed or dead, or
        re-batched): their root accounts can be closed."""
        marks = ",".join("?" for _ in ACTIVE_STAGES)
        rows = await self._db.fetch(
            "SELECT root FROM batches b WHERE closed_at IS NULL AND NOT EXISTS (SELECT 1 FROM batch_members m "
            f"JOIN messages g ON g.message_id = m.message_id WHERE m.root = b.root AND g.stage IN ({marks})) "
            "ORDER BY created_at LIMIT ?", *[s.value for s in ACTIVE_STAGES], limit)
        found = [await self.batch(bytes(r["root"])) for r in rows]
        return [b for b in found if b is not None]

    async def close_batch(self, root: bytes) -> None:
        await self._db.execute("UPDATE batches SET closed_at = ? WHERE root = ?", time.time(), root)

    async def batch_count(self) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM batches") or 0)

    # -- destination receipts (rent that comes back) ---------------------------------------------
    async def unrecorded_confirmed(self, dst_domains: list[int], since: float, limit: int = 200
                                   ) -> list[MessageRecord]:
        """Confirmed messages to `dst_domains` with no `receipts` row yet, confirmed at `since` or
        later, oldest first (what the receipt sweep looks at next)."""
        if not dst_domains:
            return []
        marks = ",".join("?" for _ in dst_domains)
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM messages m WHERE stage = ? AND confirmed_at >= ? AND dst_domain IN ({marks}) "
            "AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.message_id = m.message_id) "
            "ORDER BY confirmed_at LIMIT ?", Stage.CONFIRMED.value, float(since), *dst_domains, limit)
        return [_record(r) for r in rows]

    async def add_receipt(self, message_id: bytes, dst_domain: int, envelope: bytes, *, payer: bytes,
                          delivered_at: float, lamports: int, state: ReceiptState, now: float | None = None) -> bool:
        """Record what a receipt account said; False if it was recorded already (by any replica)."""
        now = time.time() if now is None else now
        changed = await self._db.execute(
            "INSERT INTO receipts (message_id, dst_domain, envelope, payer, delivered_at, lamports, state, "
            "next_attempt_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT DO NOTHING",
            message_id, dst_domain, envelope, payer, float(delivered_at), int(lamports), state.value, now)
        return changed == 1

    async def add_receipts(self, receipts: "list[NewReceipt]", now: float | None = None) -> set[bytes]:
        """`add_receipt` for many, in one transaction; returns the ids recorded now (not before, by
        any replica)."""
        now = time.time() if now is None else now
        recorded: set[bytes] = set()
        if not receipts:
            return recorded
        async with self._db.transaction() as tx:
            for start in range(0, len(receipts), _INSERT_CHUNK):
                chunk = receipts[start:start + _INSERT_CHUNK]
                args: list[object] = []
                for r in chunk:
                    args += [r.message_id, r.dst_domain, r.envelope, r.payer, float(r.delivered_at), int(r.lamports),
                             r.state.value, now]
                rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?, 0, ?)"] * len(chunk))
                found = await tx.fetch(
                    "INSERT INTO receipts (message_id, dst_domain, envelope, payer, delivered_at, lamports, state, "
                    f"next_attempt_at, recorded_at) VALUES {rows} ON CONFLICT DO NOTHING RETURNING message_id", *args)
                recorded.update(bytes(r["message_id"]) for r in found)
        return recorded

    async def receipt(self, message_id: bytes) -> ReceiptRecord | None:
        row = await self._db.fetchrow(f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE message_id = ?", message_id)
        return _receipt(row) if row else None

    async def due_receipts(self, dst_domain: int, payer: bytes, after_s: float, now: float | None = None,
                           limit: int = 100) -> list[ReceiptRecord]:
        """Open receipts of `dst_domain` paid by `payer`, delivered at least `after_s` ago and due,
        leased to this replica (as `due`: another replica asking at once gets others)."""
        now = time.time() if now is None else now
        lock = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        rows = await self._db.fetch(
            "WITH picked AS (SELECT message_id FROM receipts WHERE state = ? AND dst_domain = ? AND payer = ? "
            "AND delivered_at <= ? AND next_attempt_at <= ? AND (lease_owner IS NULL OR lease_owner = ? "
            f"OR lease_until < ?) ORDER BY delivered_at LIMIT ?{lock}) "
            "UPDATE receipts SET lease_owner = ?, lease_until = ? WHERE message_id IN (SELECT message_id FROM picked) "
            f"RETURNING {_RECEIPT_COLUMNS}",
            ReceiptState.OPEN.value, dst_domain, payer, float(now - after_s), float(now), self.replica, float(now),
            limit, self.replica, float(now + self.lease_s))
        return sorted((_receipt(r) for r in rows), key=lambda r: r.delivered_at)

    async def mark_receipt_closed(self, message_id: bytes, *, by: str, tx: str | None = None,
                                  now: float | None = None) -> bool:
        """An open receipt is closed (by "us" or "other"); False when it was not open (closed already:
        count it once)."""
        now = time.time() if now is None else now
        changed = await self._db.execute(
            "UPDATE receipts SET state = ?, closed_by = ?, close_tx = ?, closed_at = ?, reason = '', "
            "lease_owner = NULL, lease_until = NULL WHERE message_id = ? AND state = ?",
            ReceiptState.CLOSED.value, by, tx, now, message_id, ReceiptState.OPEN.value)
        return changed == 1

    async def receipt_retry_later(self, message_id: bytes, reason: str, next_attempt_at: float) -> None:
        await self._db.execute(
            "UPDATE receipts SET attempts = attempts + 1, reason = ?, next_attempt_at = ?, lease_owner = NULL, "
            "lease_until = NULL WHERE message_id = ? AND state = ?",
            reason, float(next_attempt_at), message_id, ReceiptState.OPEN.value)

    async def receipt_counts(self) -> dict[ReceiptState, tuple[int, int]]:
        """Receipts by state: (how many, their lamports)."""
        rows = await self._db.fetch("SELECT state, count(*) AS n, sum(lamports) AS lamports FROM receipts GROUP BY state")
        return {ReceiptState(r["state"]): (int(r["n"]), int(r["lamports"] or 0)) for r in rows}

    # -- replicas and chains ---------------------------------------------------------------------
    async def lease(self, message_id: bytes) -> Lease | None:
        row = await self._db.fetchrow(
            "SELECT lease_owner, lease_until, leases, takeovers FROM messages WHERE message_id = ?", message_id)
        return None if row is None else Lease(row["lease_owner"], row["lease_until"], row["leases"], row["takeovers"])

    async def submissions(self, message_id: bytes | None = None) -> list[Submission]:
        """Delivery transactions sent, by any replica (of one message, or all), oldest first."""
        where, args = ("WHERE message_id = ?", (message_id,)) if message_id is not None else ("", ())
        rows = await self._db.fetch(
            f"SELECT message_id, replica, tx, lease_held, at FROM submissions {where} ORDER BY at", *args)
        return [Submission(bytes(r["message_id"]), r["replica"], r["tx"], bool(r["lease_held"]), r["at"]) for r in rows]

    async def chain_identity(self, domain: int) -> str | None:
        """The identity (ChainIdentity.encode()) of the chain whose cursor and messages are kept for
        `domain`; None before the first start that recorded it."""
        return await self._db.fetchval("SELECT identity FROM chains WHERE domain = ?", domain)

    async def set_chain_identity(self, domain: int, identity: str) -> None:
        await self._db.execute(
            "INSERT INTO chains (domain, identity, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(domain) DO UPDATE SET identity = excluded.identity, updated_at = excluded.updated_at",
            domain, identity, time.time())

    async def forget_chain(self, domain: int) -> int:
        """`relay reset-chain`: drop what this store knows of the chain behind `domain` — its identity,
        its watch cursor and the messages it sent (their nonces start again on a new chain).
        Returns the number of messages dropped."""
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM chains WHERE domain = ?", domain)
            await tx.execute("DELETE FROM cursors WHERE name = ?", f"watch:{domain}")
            return await tx.execute("DELETE FROM messages WHERE src_domain = ?", domain)
