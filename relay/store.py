"""The relayer's durable state (SQLite): every message is a pending operation whose stage, reason
and next attempt live here, so a killed relayer resumes exactly where it was.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from relay.envelope import Envelope
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
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (stage, next_attempt_at);
-- One message per (source, nonce), except for the committee (domain 0): its PROOF_ATTESTATIONs all
-- carry nonce 0 and are told apart by their payload.
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_nonce ON messages (src_domain, nonce) WHERE src_domain != 0;
CREATE TABLE IF NOT EXISTS cursors (
    name       TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


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


def _record(row: aiosqlite.Row) -> MessageRecord:
    values = dict(row)
    values["stage"] = Stage(values["stage"])
    values["reason_code"] = RetryReason.stored(values["reason_code"])
    return MessageRecord(**values)


async def _migrate_unique_nonce(db: aiosqlite.Connection) -> None:
    """Stores written before proof attestations had UNIQUE (src_domain, nonce) on the table itself;
    move the old table aside so the schema recreates it with the partial index instead."""
    async with db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'") as cur:
        row = await cur.fetchone()
    if row is not None and "UNIQUE (src_domain, nonce)" in row[0]:
        await db.execute("ALTER TABLE messages RENAME TO messages_v0")
        await db.execute("DROP INDEX IF EXISTS messages_due")
        await db.commit()


async def _columns(db: aiosqlite.Connection, table: str) -> list[str]:
    async with db.execute(f"PRAGMA table_info({table})") as cur:
        return [row[1] for row in await cur.fetchall()]


async def _add_reason_code(db: aiosqlite.Connection) -> None:
    """Stores written before retry reasons were a closed set have no reason_code column: add it
    (empty for the existing rows; each gets its code at its next step)."""
    if "reason_code" not in await _columns(db, "messages"):
        await db.execute("ALTER TABLE messages ADD COLUMN reason_code TEXT NOT NULL DEFAULT ''")
        await db.commit()


async def _finish_migration(db: aiosqlite.Connection) -> None:
    # Also completes a migration a crash interrupted: the copy is idempotent.
    async with db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_v0'") as cur:
        if await cur.fetchone() is None:
            return
    old = set(await _columns(db, "messages_v0"))
    columns = ", ".join(c for c in MessageRecord.__slots__ if c in old)  # the old table may predate some
    await db.execute(f"INSERT OR IGNORE INTO messages ({columns}) SELECT {columns} FROM messages_v0")
    await db.execute("DROP TABLE messages_v0")
    await db.executescript(_SCHEMA)  # indexes that went with the old table (an interrupted run)
    await db.commit()


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
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str | Path) -> "Store":
        db = await open_durable(path)
        await _migrate_unique_nonce(db)
        await db.executescript(_SCHEMA)
        await db.commit()
        await _add_reason_code(db)
        await _finish_migration(db)
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def add_observed(self, envelope: Envelope, source_tx: str, now: float | None = None) -> bool:
        """Record a newly observed message; False if it was already known."""
        now = time.time() if now is None else now
        cursor = await self._db.execute(
            f"INSERT OR IGNORE INTO messages ({_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, '', '', 0, ?, NULL, NULL, NULL, ?, NULL, NULL, NULL, ?)",
            (
                envelope.message_id, envelope.src_domain, envelope.nonce, envelope.dst_domain, envelope.kind,
                envelope.encode(), source_tx, Stage.OBSERVED.value, now, now, now,
            ),
        )
        await self._db.commit()
        return cursor.rowcount == 1

    async def get(self, message_id: bytes) -> MessageRecord | None:
        async with self._db.execute(f"SELECT {_COLUMNS} FROM messages WHERE message_id = ?", (message_id,)) as cur:
            row = await cur.fetchone()
        return _record(row) if row else None

    async def find_prefix(self, hex_prefix: str) -> list[MessageRecord]:
        prefix = hex_prefix.lower().removeprefix("0x")
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE lower(hex(message_id)) LIKE ? LIMIT 5", (prefix + "%",)
        ) as cur:
            return [_record(r) for r in await cur.fetchall()]

    async def get_by_nonce(self, src_domain: int, nonce: int) -> MessageRecord | None:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE src_domain = ? AND nonce = ?", (src_domain, nonce)
        ) as cur:
            row = await cur.fetchone()
        return _record(row) if row else None

    async def due(self, stage: Stage, now: float | None = None, limit: int = 100) -> list[MessageRecord]:
        now = time.time() if now is None else now
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE stage = ? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?",
            (stage.value, now, limit),
        ) as cur:
            return [_record(r) for r in await cur.fetchall()]

    async def next_due_at(self) -> float | None:
        marks = ",".join("?" for _ in ACTIVE_STAGES)
        async with self._db.execute(
            f"SELECT min(next_attempt_at) FROM messages WHERE stage IN ({marks})", [s.value for s in ACTIVE_STAGES]
        ) as cur:
            (value,) = await cur.fetchone()
        return value

    async def advance(self, message_id: bytes, stage: Stage, *, now: float | None = None, **fields: object) -> None:
        """Move to `stage` (resetting attempts and reason), setting any extra columns given."""
        now = time.time() if now is None else now
        stamp = {Stage.READY: "signed_at", Stage.SUBMITTED: "submitted_at", Stage.CONFIRMED: "confirmed_at"}.get(stage)
        if stamp and stamp not in fields:
            fields[stamp] = now
        assignments = {"stage": stage.value, "reason": "", "reason_code": "", "attempts": 0, "next_attempt_at": now,
                       "updated_at": now}
        assignments.update(fields)
        await self._update(message_id, assignments)

    async def retry_later(self, message_id: bytes, code: RetryReason, reason: str, next_attempt_at: float, *,
                          now: float | None = None, stage: Stage | None = None) -> None:
        """Count an attempt and look again at `next_attempt_at` (never, with inf: the dead letter)."""
        now = time.time() if now is None else now
        assignments: dict[str, object] = {"reason": reason, "reason_code": code.value,
                                          "next_attempt_at": next_attempt_at, "updated_at": now}
        if stage is not None:
            assignments["stage"] = stage.value
        await self._db.execute(
            "UPDATE messages SET attempts = attempts + 1, "
            + ", ".join(f"{k} = ?" for k in assignments)
            + " WHERE message_id = ?",
            [*assignments.values(), message_id],
        )
        await self._db.commit()

    async def postpone(self, message_id: bytes, code: RetryReason, reason: str, next_attempt_at: float) -> None:
        """Look again later without counting an attempt (e.g. waiting for finality)."""
        await self._update(message_id, {"reason": reason, "reason_code": code.value, "next_attempt_at": next_attempt_at,
                                        "updated_at": time.time()})

    async def force_retry(self, message_id: bytes, now: float | None = None) -> MessageRecord | None:
        """Operator's `relay retry`: make the message due now; a dead one restarts from observed."""
        record = await self.get(message_id)
        if record is None:
            return None
        now = time.time() if now is None else now
        stage = Stage.OBSERVED if record.stage is Stage.DEAD else record.stage
        if record.stage is Stage.CONFIRMED:
            return record
        await self._update(
            message_id,
            {"stage": stage.value, "attempts": 0, "next_attempt_at": now, "updated_at": now,
             "reason": f"manual retry (was: {record.reason or record.stage.value})",
             "reason_code": RetryReason.MANUAL_RETRY.value},
        )
        return await self.get(message_id)

    async def _update(self, message_id: bytes, assignments: dict[str, object]) -> None:
        await self._db.execute(
            "UPDATE messages SET " + ", ".join(f"{k} = ?" for k in assignments) + " WHERE message_id = ?",
            [*assignments.values(), message_id],
        )
        await self._db.commit()

    async def counts(self) -> dict[tuple[Stage, RetryReason | None], int]:
        """Messages by stage and reason code, for metrics and `relay status`."""
        counts: dict[tuple[Stage, RetryReason | None], int] = {}
        async with self._db.execute(
            "SELECT stage, reason_code, count(*) FROM messages GROUP BY stage, reason_code"
        ) as cur:
            for stage, code, n in await cur.fetchall():
                key = (Stage(stage), RetryReason.stored(code))
                counts[key] = counts.get(key, 0) + n  # (codes this version does not know count as none)
        return counts

    async def listing(self, limit: int = 50) -> list[MessageRecord]:
        """Unfinished first, oldest (most stuck) first; then the latest confirmed."""
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM messages ORDER BY stage = 'confirmed', "
            "CASE WHEN stage = 'confirmed' THEN -confirmed_at ELSE observed_at END LIMIT ?",
            (limit,),
        ) as cur:
            return [_record(r) for r in await cur.fetchall()]

    async def highest_contiguous_nonce(self, src_domain: int) -> int:
        """The largest n such that nonces 0..n are all known (-1 if nonce 0 is missing)."""
        async with self._db.execute(
            "SELECT nonce FROM messages WHERE src_domain = ? ORDER BY nonce", (src_domain,)
        ) as cur:
            expected = 0
            async for (nonce,) in cur:
                if nonce != expected:
                    break
                expected += 1
        return expected - 1

    async def missing_nonces(self, src_domain: int, limit: int = 100) -> list[int]:
        """Nonces below the highest seen that were never observed (gaps to re-observe)."""
        if src_domain == COMMITTEE_DOMAIN:
            return []  # attestations all use nonce 0: there is no sequence
        async with self._db.execute(
            "SELECT nonce FROM messages WHERE src_domain = ? ORDER BY nonce", (src_domain,)
        ) as cur:
            seen = [n async for (n,) in cur]
        missing: list[int] = []
        expected = 0
        for nonce in seen:
            while expected < nonce and len(missing) < limit:
                missing.append(expected)
                expected += 1
            expected = nonce + 1
        return missing

    async def get_cursor(self, name: str) -> str | None:
        async with self._db.execute("SELECT cursor FROM cursors WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def set_cursor(self, name: str, cursor: str) -> None:
        await self._db.execute(
            "INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            (name, cursor, time.time()),
        )
        await self._db.commit()
