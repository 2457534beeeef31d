"""The worker's durable state (SQLite): one row per delivered TASK_REQUEST with its stage, the
stored output and signed result, and how many times the executor ran, plus the watch cursor. A
killed worker resumes from here without losing or repeating work (docs/TASKS.md, "Worker")."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from relay.store import open_durable


class TaskStage(str, enum.Enum):
    SEEN = "seen"  # recorded; not started
    RUNNING = "running"  # executor started (a restart re-runs it, up to the run limit)
    EXECUTED = "executed"  # output and signed result stored: the executor never runs again
    SUBMITTED = "submitted"  # submission started (submit_tx set once the board accepted it)
    DONE = "done"  # our result is on the board
    LOST = "lost"  # another worker answered first
    SKIPPED = "skipped"  # not served (reason says why); nothing was run
    FAILED = "failed"  # tried and gave up (reason says why)


ACTIVE_STAGES = (TaskStage.SEEN, TaskStage.RUNNING, TaskStage.EXECUTED, TaskStage.SUBMITTED)
FINAL_STAGES = (TaskStage.DONE, TaskStage.LOST, TaskStage.SKIPPED, TaskStage.FAILED)

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


def _record(row: aiosqlite.Row) -> TaskRecord:
    values = dict(row)
    values["stage"] = TaskStage(values["stage"])
    return TaskRecord(**values)


class WorkerStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str | Path) -> "WorkerStore":
        # Durable commits are what make "never run the executor twice after `executed`" hold.
        db = await open_durable(path)
        await db.executescript(_SCHEMA)
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def add(self, request_id: bytes, src_domain: int, executor: str, envelope: bytes, delivery_tx: str,
                  position: int, deadline: int, now: float | None = None) -> bool:
        """Record a delivered request as `seen`; False when it was already known (idempotent)."""
        now = time.time() if now is None else now
        cursor = await self._db.execute(
            "INSERT OR IGNORE INTO tasks (request_id, src_domain, executor, envelope, delivery_tx, position, "
            "deadline, stage, seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, src_domain, executor, envelope, delivery_tx, position, deadline, TaskStage.SEEN.value,
             now, now),
        )
        await self._db.commit()
        return cursor.rowcount == 1

    async def get(self, request_id: bytes) -> TaskRecord | None:
        async with self._db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE request_id = ?", (request_id,)) as cur:
            row = await cur.fetchone()
        return _record(row) if row else None

    async def active(self) -> list[TaskRecord]:
        marks = ", ".join("?" for _ in ACTIVE_STAGES)
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE stage IN ({marks}) ORDER BY position, seen_at",
            [s.value for s in ACTIVE_STAGES],
        ) as cur:
            return [_record(r) for r in await cur.fetchall()]

    async def all(self, limit: int = 1000) -> list[TaskRecord]:
        async with self._db.execute(f"SELECT {_COLUMNS} FROM tasks ORDER BY position, seen_at LIMIT ?", (limit,)) as cur:
            return [_record(r) for r in await cur.fetchall()]

    async def counts(self) -> dict[str, int]:
        async with self._db.execute("SELECT stage, count(*) FROM tasks GROUP BY stage") as cur:
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def _update(self, request_id: bytes, sets: str, values: tuple) -> None:
        await self._db.execute(f"UPDATE tasks SET {sets}, updated_at = ? WHERE request_id = ?",
                               (*values, time.time(), request_id))
        await self._db.commit()

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
        async with self._db.execute("SELECT output FROM tasks WHERE output_hash = ? AND output IS NOT NULL LIMIT 1",
                                    (output_hash,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

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
