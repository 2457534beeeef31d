"""One small async SQL interface over the two engines a daemon's state can live in:

- SQLite (aiosqlite), the embedded default: a file path in the config (`db = "relayer.db"`);
- PostgreSQL (asyncpg), for several replicas sharing one state: a URL (`db = "postgresql://..."`).

The stores (relay.store, relay.tasks.worker_store) write their SQL once, with `?` placeholders and
the common subset of both dialects (`INSERT ... ON CONFLICT`, `RETURNING`); `Database.dialect` is
there for the few statements that differ (leasing with `FOR UPDATE SKIP LOCKED`, hex functions).
Rows come back as plain dicts.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import asyncpg

from relay.errors import ConfigError

Dialect = Literal["sqlite", "postgresql"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str | Path) -> bool:
    """True for a PostgreSQL URL, False for an SQLite path (or ":memory:")."""
    return isinstance(db, str) and db.startswith(_POSTGRES_SCHEMES)


def redact(db: str | Path) -> str:
    """The location for logs: a PostgreSQL URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(db))


class Database(abc.ABC):
    dialect: Dialect

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the number of rows it changed."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments (DML only: no rows come back). Not atomic by
        itself: run it on a transaction's `tx` when the rows must land together."""
        for args in rows:
            await self.execute(sql, *args)

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    @abc.abstractmethod
    async def executescript(self, script: str) -> None:
        """DDL: `;`-separated statements, written with SQLite's type names (BLOB, REAL, INTEGER)."""

    @abc.abstractmethod
    def transaction(self) -> Any:
        """`async with db.transaction() as tx:` — the statements on `tx` commit together or not at
        all. SQLite takes the write lock at the start (BEGIN IMMEDIATE)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


# --- SQLite ------------------------------------------------------------------------------------------

class SqliteDatabase(Database):
    """One aiosqlite connection in autocommit mode; a lock keeps one coroutine's transaction from
    taking in another's statements (they share the connection)."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._in_tx = False

    @classmethod
    async def open(cls, path: str | Path) -> "SqliteDatabase":
        """WAL + synchronous=FULL: a committed change survives a killed process or power loss;
        busy_timeout lets a second reader (`relay status`) wait instead of failing."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA busy_timeout=5000")
        return cls(conn)

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        async with self._conn.execute(sql, args) as cur:
            return cur.rowcount

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        async with self._conn.execute(sql, args) as cur:
            return [dict(row) for row in await cur.fetchall()]

    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # One call into aiosqlite's thread for all the rows (sqlite3's executemany), not one per row.
        await self._conn.executemany(sql, rows)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._execute(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._lock:
            return await self._fetch(sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._lock:
            await self._executemany(sql, rows)

    async def executescript(self, script: str) -> None:
        async with self._lock:
            await self._conn.executescript(script)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()


class _SqliteTx(Database):
    """The statements of one SQLite transaction (the lock is already held)."""

    dialect: Dialect = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._db._execute(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await self._db._fetch(sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db._executemany(sql, rows)

    async def executescript(self, script: str) -> None:
        raise RuntimeError("DDL inside a transaction is not supported")

    def transaction(self) -> Any:
        raise RuntimeError("transactions do not nest")

    async def close(self) -> None:
        raise RuntimeError("close the database, not the transaction")


# --- PostgreSQL --------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\?")
_DDL_TYPES = ((re.compile(r"\bBLOB\b"), "BYTEA"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
              (re.compile(r"\bINTEGER\b"), "BIGINT"))


def postgres_sql(sql: str) -> str:
    """`?` placeholders as asyncpg's `$1, $2, ...` (the stores' SQL has no `?` inside literals)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def postgres_ddl(script: str) -> str:
    for pattern, name in _DDL_TYPES:
        script = pattern.sub(name, script)
    return script


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 1", "UPDATE 3", "DELETE 0".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PgRunner(Database):
    dialect: Dialect = "postgresql"

    def __init__(self, target: asyncpg.Pool | asyncpg.Connection) -> None:
        self._target = target

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._target.execute(postgres_sql(sql), *args))

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._target.fetch(postgres_sql(sql), *args)]

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # asyncpg prepares the statement once and pipelines the rows (one round trip, not one per row).
        if rows:
            await self._target.executemany(postgres_sql(sql), rows)

    async def executescript(self, script: str) -> None:
        await self._target.execute(postgres_ddl(script))

    def transaction(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PostgresDatabase(_PgRunner):
    """An asyncpg pool: statements from concurrent coroutines run on separate connections."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        super().__init__(pool)
        self._pool = pool
        self.url = url

    @classmethod
    async def open(cls, url: str, max_size: int = 10) -> "PostgresDatabase":
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, command_timeout=60)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}; check the `db` URL, that the "
                              "server is running and that the database exists") from None
        return cls(pool, url)

    async def executescript(self, script: str) -> None:
        # Several replicas may create the schema at once: serialise that on an advisory lock.
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7304)")
            await conn.execute(postgres_ddl(script))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgRunner(conn)

    async def close(self) -> None:
        await self._pool.close()


async def open_database(db: str | Path, *, pool_size: int = 10) -> Database:
    """The database a daemon's config names: a PostgreSQL URL, else an SQLite file path."""
    if is_postgres_url(db):
        return await PostgresDatabase.open(str(db), max_size=pool_size)
    return await SqliteDatabase.open(db)
