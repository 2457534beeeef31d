"""The worker's durable state: one row per delivered TASK_REQUEST with its stage, the stored output
and signed result, and how many times the executor ran, plus the watch cursor and the identity of
the chain they belong to. A killed worker resumes from here without losing or repeating work
(docs/TASKS.md, "Worker"). An SQLite file by default, or a PostgreSQL database (`[worker] db` a
postgresql:// URL), through relay.database."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.database import Database, open_database, redact


class TaskStage(str, enum.Enum):
    SEEN = "seen"  # recorded; not started (v2: waiting for the auction price to reach ours)
    CLAIMED = "claimed"  # v2: we hold the claim (stored in `claims`): only we may submit, until its deadline
    RUNNING = "running"  # executor started (a restart re-runs it, up to the run limit)
    EXECUTED = "executed"  # output and signed result stored: the executor never runs again
    SUBMITTED = "submitted"  # submission started (submit_tx set once the board accepted it)
    DONE = "done"  # our result is on the board
    LOST = "lost"  # another worker answered first (v2: won the claim race, or answered): normal
    BOND_LOST = "bond_lost"  # v2: our claim ran out without our result on the board (the bond is forfeited)
    SKIPPED = "skipped"  # not served (reason says why); nothing was run
    FAILED = "failed"  # tried and gave up (reason says why)


ACTIVE_STAGES = (TaskStage.SEEN, TaskStage.CLAIMED, TaskStage.RUNNING, TaskStage.EXECUTED, TaskStage.SUBMITTED)
FINAL_STAGES = (TaskStage.DONE, TaskStage.LOST, TaskStage.SKIPPED, TaskStage.FAILED, TaskStage.BOND_LOST)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    request_id   BLOB PRIMARY KEY,
    src_domain   INTEGER NOT NULL,
    executor     TEXT NOT NULL,
    envelope     BLOB NOT NULL,
    delivery_tx  TEXT NOT NULL,
    position     INTEGER NOT NULL,
    deadline     INTEGER NOT NULL,
    stage        TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    runs         INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    output       BLOB,
    output_hash  BLOB,
    result       BLOB,
    submit_tx    TEXT,
    seen_at      REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_stage ON tasks (stage);
CREATE INDEX IF NOT EXISTS tasks_output ON tasks (output_hash);
CREATE TABLE IF NOT EXISTS cursors (
    name       TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL,
    updated_at REAL NOT NULL
);
-- Task protocol v2: the auction's start and, once we hold it, our claim (one row per v2 task).
-- price and bond are decimal text: they are 128-bit.
CREATE TABLE IF NOT EXISTS claims (
    request_id     BLOB PRIMARY KEY,
    auction_start  INTEGER NOT NULL,
    claimant       BLOB,
    payout         BLOB,
    price          TEXT,
    bond           TEXT,
    claim_deadline INTEGER,
    claim_tx       TEXT,
    updated_at     REAL NOT NULL
);
-- Settling up after a claimed task ended (docs/TASKS.md "Worker", settle pass): one row per task this
-- worker claimed, from its final stage on; state 'pending' until nothing more can come back ('done').
-- Each step's transaction is kept, so a restart never repeats a step that landed.
CREATE TABLE IF NOT EXISTS settlements (
    request_id  BLOB PRIMARY KEY,
    state       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    release_tx  TEXT,
    expire_tx   TEXT,
    withdrawn   INTEGER NOT NULL DEFAULT 0,
    withdraw_tx TEXT,
    close_txs   TEXT,
    tries       INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_due ON settlements (state, next_at);
-- The identity of the chain the cursor and tasks belong to (relay.chainstate), by chain name.
CREATE TABLE IF NOT EXISTS chains (
    name       TEXT PRIMARY KEY,
    identity   TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    request_id: bytes
    src_domain: int
    executor: str
    envelope: bytes
    delivery_tx: str
    position: int
    deadline: int
    stage: TaskStage
    reason: str
    runs: int
    attempts: int
    output: bytes | None
    output_hash: bytes | None
    result: bytes | None
    submit_tx: str | None
    seen_at: float
    updated_at: float


_COLUMNS = ", ".join(TaskRecord.__slots__)


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """A v2 task's auction start and, once we claimed, the claim (what our result must carry)."""

    request_id: bytes
    auction_start: int  # serving chain's clock
    claimant: bytes | None = None
    payout: bytes | None = None
    price: int | None = None
    bond: int | None = None
    claim_deadline: int | None = None  # serving chain's clock: we never submit after it
    claim_tx: str | None = None

    @property
    def held(self) -> bool:
        return self.claimant is not None


@dataclass(frozen=True, slots=True)
class SettleRecord:
    """Where settling up after one claimed task stands (table `settlements`)."""

    request_id: bytes
    state: str  # "pending" | "done"
    reason: str
    release_tx: str | None
    expire_tx: str | None
    withdrawn: bool
    withdraw_tx: str | None
    close_txs: str | None  # space-separated signatures of the closes sent
    tries: int  # passes that found nothing to do yet (the backoff's exponent)
    next_at: float  # local time of the next look
    created_at: float

    @property
    def done(self) -> bool:
        return self.state == "done"


_SETTLE_COLUMNS = ", ".join(SettleRecord.__slots__)


def _settle_record(row: dict[str, Any]) -> SettleRecord:
    values = dict(row)
    values["request_id"] = bytes(values["request_id"])
    values["withdrawn"] = bool(values["withdrawn"])
    return SettleRecord(**values)


def _record(row: dict[str, Any]) -> TaskRecord:
    values = dict(row)
    values["stage"] = TaskStage(values["stage"])
    for name in ("request_id", "envelope", "output", "output_hash", "result"):
        if values[name] is not None:
            values[name] = bytes(values[name])
    return TaskRecord(**values)


class WorkerStore:
    def __init__(self, db: Database, location: str = "") -> None:
        self._db = db
        self.location = location

    @classmethod
    async def open(cls, db: str | Path) -> "WorkerStore":
        """The store at `db`: an SQLite path or a PostgreSQL URL. Every write commits at once (SQLite
        in WAL with synchronous=FULL): durable commits are what make "never run the executor twice
        after `executed`" hold."""
        database = await open_database(db, pool_size=4)
        try:
            await database.executescript(_SCHEMA)
        except BaseException:
            await database.close()
            raise
        return cls(database, location=redact(db))

    async def close(self) -> None:
        await self._db.close()

    async def add(self, request_id: bytes, src_domain: int, executor: str, envelope: bytes, delivery_tx: str,
                  position: int, deadline: int, now: float | None = None) -> bool:
        """Record a delivered request as `seen`; False when it was already known (idempotent)."""
        now = time.time() if now is None else now
        changed = await self._db.execute(
            "INSERT INTO tasks (request_id, src_domain, executor, envelope, delivery_tx, position, "
            "deadline, stage, seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            request_id, src_domain, executor, envelope, delivery_tx, position, deadline, TaskStage.SEEN.value,
            now, now,
        )
        return changed == 1

    async def add_v2(self, request_id: bytes, auction_start: int) -> None:
        """Remember a v2 task's auction start (idempotent; call after `add`)."""
        await self._db.execute(
            "INSERT INTO claims (request_id, auction_start, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            request_id, auction_start, time.time())

    async def claim_of(self, request_id: bytes) -> ClaimRecord | None:
        row = await self._db.fetchrow(
            "SELECT request_id, auction_start, claimant, payout, price, bond, claim_deadline, claim_tx FROM claims "
            "WHERE request_id = ?", request_id)
        if row is None:
            return None
        values = dict(row)
        for name in ("request_id", "claimant", "payout"):
            if values[name] is not None:
                values[name] = bytes(values[name])
        for name in ("price", "bond"):
            if values[name] is not None:
                values[name] = int(values[name])
        return ClaimRecord(**values)

    async def claimed(self, request_id: bytes, claimant: bytes, payout: bytes, price: int, bond: int,
                      claim_deadline: int, claim_tx: str | None) -> None:
        """We hold the claim: stored with the task moved to `claimed`, before anything runs."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE claims SET claimant = ?, payout = ?, price = ?, bond = ?, claim_deadline = ?, claim_tx = ?, "
                "updated_at = ? WHERE request_id = ?",
                claimant, payout, str(price), str(bond), claim_deadline, claim_tx, time.time(), request_id)
            await tx.execute("UPDATE tasks SET stage = ?, reason = '', updated_at = ? WHERE request_id = ?",
                             TaskStage.CLAIMED.value, time.time(), request_id)

    async def get(self, request_id: bytes) -> TaskRecord | None:
        row = await self._db.fetchrow(f"SELECT {_COLUMNS} FROM tasks WHERE request_id = ?", request_id)
        return _record(row) if row else None

    async def active(self) -> list[TaskRecord]:
        marks = ", ".join("?" for _ in ACTIVE_STAGES)
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM tasks WHERE stage IN ({marks}) ORDER BY position, seen_at",
            *[s.value for s in ACTIVE_STAGES],
        )
        return [_record(r) for r in rows]

    async def all(self, limit: int = 1000) -> list[TaskRecord]:
        rows = await self._db.fetch(f"SELECT {_COLUMNS} FROM tasks ORDER BY position, seen_at LIMIT ?", limit)
        return [_record(r) for r in rows]

    async def counts(self) -> dict[str, int]:
        rows = await self._db.fetch("SELECT stage, count(*) AS n FROM tasks GROUP BY stage")
        return {row["stage"]: row["n"] for row in rows}

    async def _update(self, request_id: bytes, sets: str, values: tuple) -> None:
        await self._db.execute(f"UPDATE tasks SET {sets}, updated_at = ? WHERE request_id = ?",
                               *values, time.time(), request_id)

    async def start_run(self, request_id: bytes) -> int:
        """Mark `running` and count the run before the executor starts; returns the run number."""
        await self._update(request_id, "stage = ?, runs = runs + 1, reason = ''", (TaskStage.RUNNING.value,))
        record = await self.get(request_id)
        assert record is not None
        return record.runs

    async def executed(self, request_id: bytes, output: bytes, output_hash: bytes, result: bytes) -> None:
        await self._update(request_id, "stage = ?, output = ?, output_hash = ?, result = ?, reason = ''",
                           (TaskStage.EXECUTED.value, output, output_hash, result))

    async def output_by_hash(self, output_hash: bytes) -> bytes | None:
        """A stored output (for the worker's output host), whatever became of its task."""
        output = await self._db.fetchval("SELECT output FROM tasks WHERE output_hash = ? AND output IS NOT NULL LIMIT 1",
                                         output_hash)
        return None if output is None else bytes(output)

    async def submitting(self, request_id: bytes) -> None:
        """Written before the transaction goes out, so a restart knows a submission may be on chain."""
        await self._update(request_id, "stage = ?, attempts = attempts + 1", (TaskStage.SUBMITTED.value,))

    async def submitted(self, request_id: bytes, tx: str) -> None:
        await self._update(request_id, "stage = ?, submit_tx = ?", (TaskStage.SUBMITTED.value, tx))

    async def note(self, request_id: bytes, reason: str) -> None:
        """Record why the last attempt did not finish (the stage stays; a retry follows)."""
        await self._update(request_id, "reason = ?", (reason,))

    async def finish(self, request_id: bytes, stage: TaskStage, reason: str = "") -> None:
        assert stage in FINAL_STAGES
        await self._update(request_id, "stage = ?, reason = ?", (stage.value, reason))

    # --- settling up after claimed tasks ------------------------------------------------------

    async def settle_due(self, claimant: bytes, now: float, limit: int = 100) -> list[SettleRecord]:
        """The claimed tasks to settle now: every task in a final stage whose stored claim is
        `claimant`'s (this worker's board account: nothing else is ever settled) gets a pending row
        on first sight; those pending whose next look is due are returned, oldest look first."""
        finals = [s.value for s in FINAL_STAGES]
        marks = ", ".join("?" for _ in finals)
        await self._db.execute(
            "INSERT INTO settlements (request_id, state, next_at, created_at, updated_at) "
            "SELECT t.request_id, 'pending', ?, ?, ? FROM tasks t JOIN claims c ON c.request_id = t.request_id "
            f"WHERE c.claimant = ? AND t.stage IN ({marks}) ON CONFLICT DO NOTHING",
            now, now, now, claimant, *finals)
        rows = await self._db.fetch(
            f"SELECT {', '.join('s.' + c for c in SettleRecord.__slots__)} FROM settlements s "
            "JOIN claims c ON c.request_id = s.request_id "
            "WHERE s.state = 'pending' AND s.next_at <= ? AND c.claimant = ? ORDER BY s.next_at LIMIT ?",
            now, claimant, limit)
        return [_settle_record(r) for r in rows]

    async def settlement(self, request_id: bytes) -> SettleRecord | None:
        row = await self._db.fetchrow(f"SELECT {_SETTLE_COLUMNS} FROM settlements WHERE request_id = ?", request_id)
        return _settle_record(row) if row else None

    async def settlements(self) -> list[SettleRecord]:
        rows = await self._db.fetch(f"SELECT {_SETTLE_COLUMNS} FROM settlements ORDER BY created_at")
        return [_settle_record(r) for r in rows]

    async def _settle_update(self, request_id: bytes, sets: str, values: tuple) -> None:
        await self._db.execute(f"UPDATE settlements SET {sets}, updated_at = ? WHERE request_id = ?",
                               *values, time.time(), request_id)

    async def settle_wait(self, request_id: bytes, reason: str, next_at: float, tries: int) -> None:
        """Nothing to do for it yet: look again at `next_at` (local time)."""
        await self._settle_update(request_id, "reason = ?, next_at = ?, tries = ?", (reason, next_at, tries))

    async def bond_released(self, request_id: bytes, tx: str) -> None:
        await self._settle_update(request_id, "release_tx = ?, tries = 0", (tx,))

    async def claim_expired(self, request_id: bytes, tx: str) -> None:
        await self._settle_update(request_id, "expire_tx = ?, tries = 0", (tx,))

    async def credits_withdrawn(self, request_id: bytes, tx: str | None) -> None:
        """Withdraw done (tx None: nothing was held): never called again for this task."""
        await self._settle_update(request_id, "withdrawn = 1, withdraw_tx = ?", (tx,))

    async def settle_done(self, request_id: bytes, reason: str, close_txs: list[str] | None = None) -> None:
        """Nothing more can come back for this task: it is never looked at again."""
        if close_txs:
            await self._settle_update(request_id, "state = 'done', reason = ?, close_txs = ?",
                                      (reason, " ".join(close_txs)))
        else:
            await self._settle_update(request_id, "state = 'done', reason = ?", (reason,))

    async def get_cursor(self, name: str) -> str | None:
        return await self._db.fetchval("SELECT cursor FROM cursors WHERE name = ?", name)

    async def set_cursor(self, name: str, cursor: str) -> None:
        await self._db.execute(
            "INSERT INTO cursors (name, cursor, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            name, cursor, time.time(),
        )

    async def chain_identity(self, chain: str) -> str | None:
        """The identity (ChainIdentity.encode()) of the chain this store's tasks and cursor were
        written for; None before the first start that recorded it."""
        return await self._db.fetchval("SELECT identity FROM chains WHERE name = ?", chain)

    async def set_chain_identity(self, chain: str, identity: str) -> None:
        await self._db.execute(
            "INSERT INTO chains (name, identity, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET identity = excluded.identity, updated_at = excluded.updated_at",
            chain, identity, time.time(),
        )

    async def forget_chain(self, chain: str) -> int:
        """`relay reset-chain <chain> --worker`: drop what this store knows of the chain it serves (its
        identity, the watch cursors and the tasks: their request ids mean nothing on a new chain).
        Returns the number of tasks dropped."""
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM chains WHERE name = ?", chain)
            await tx.execute("DELETE FROM cursors")
            await tx.execute("DELETE FROM claims")
            await tx.execute("DELETE FROM settlements")
            return await tx.execute("DELETE FROM tasks")
