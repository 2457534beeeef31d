"""The worker store on both engines (SQLite file, PostgreSQL database): its chain identity, the
reset of a chain's state (`relay reset-chain <chain> --worker`), and the worker's identity check at
start (relay/daemons/worker.py). The worker's stage logic on both engines is tests/unit/test_worker.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.chainstate import ChainStateMismatch
from relay.daemons.worker import _chain_check
from relay.interfaces import ChainIdentity
from relay.tasks.worker_store import TaskStage, WorkerStore

FIRST = ChainIdentity("solana", "", "GenesisOfTheFirstLedger1111111111111111111")
SECOND = ChainIdentity("solana", "", "GenesisOfAnotherLedger22222222222222222222")


@pytest.fixture(params=["sqlite", "postgresql"])
def worker_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "worker.db")
    return request.getfixturevalue("postgres").create_database("worker_store")


class FakeChain:
    """What the worker's check reads of a chain: its name, domain and identity."""

    name = "solana"
    domain = 2

    def __init__(self, identity: ChainIdentity) -> None:
        self.identity = identity
        self.started = self.closed = 0

    async def start(self) -> None:
        self.started += 1

    async def close(self) -> None:
        self.closed += 1

    async def chain_identity(self) -> ChainIdentity:
        return self.identity

    async def cursor_problem(self, cursor: str) -> str | None:
        raise AssertionError("the worker's board cursor is not a gateway cursor: never judged by the adapter")


async def test_tasks_cursor_and_identity_survive_a_reopen_and_a_reset_drops_them(worker_db: str) -> None:
    store = await WorkerStore.open(worker_db)
    try:
        assert await store.add(b"\x01" * 32, 1, "echo", b"envelope", "0xtx", 7, 2_000_000_000)
        assert not await store.add(b"\x01" * 32, 1, "echo", b"envelope", "0xtx", 7, 2_000_000_000)
        await store.executed(b"\x01" * 32, b"out", b"\x02" * 32, b"result")
        await store.set_cursor("watch:board", "12:0")
        await store.set_chain_identity("solana", FIRST.encode())
    finally:
        await store.close()
    store = await WorkerStore.open(worker_db)
    try:
        record = await store.get(b"\x01" * 32)
        assert record is not None and record.stage is TaskStage.EXECUTED and record.output == b"out"
        assert isinstance(record.request_id, bytes) and isinstance(record.result, bytes)
        assert await store.output_by_hash(b"\x02" * 32) == b"out"
        assert await store.counts() == {"executed": 1}
        assert await store.get_cursor("watch:board") == "12:0"
        assert await store.chain_identity("solana") == FIRST.encode()
        assert await store.forget_chain("solana") == 1
        assert await store.chain_identity("solana") is None
        assert await store.get_cursor("watch:board") is None
        assert await store.all() == []
    finally:
        await store.close()


async def test_the_worker_refuses_a_store_of_another_chain_naming_the_reset(worker_db: str) -> None:
    store = await WorkerStore.open(worker_db)
    try:
        first = FakeChain(FIRST)
        await _chain_check(first, store).setup()  # the first start records the identity
        assert await store.chain_identity("solana") == FIRST.encode()
        assert first.started == first.closed == 1  # the reader is closed once the check is done
        await _chain_check(FakeChain(FIRST), store).setup()  # the same chain again: accepted
        other = FakeChain(SECOND)
        with pytest.raises(ChainStateMismatch) as refused:
            await _chain_check(other, store).setup()
        message = str(refused.value)
        assert "the worker store at" in message and "chains.solana (domain 2)" in message
        assert SECOND.genesis in message and "relay reset-chain solana --worker" in message
        assert other.closed == 1
        await store.forget_chain("solana")
        await _chain_check(FakeChain(SECOND), store).setup()
        assert await store.chain_identity("solana") == SECOND.encode()
    finally:
        await store.close()


async def test_reset_chain_worker_drops_the_chain_from_the_configured_store(worker_db: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    store = await WorkerStore.open(worker_db)
    try:
        await store.add(b"\x03" * 32, 1, "echo", b"envelope", "sig", 1, 2_000_000_000)
        await store.set_chain_identity("solana", FIRST.encode())
    finally:
        await store.close()
    # `{chain}` in the setting: a file per chain, or (here) the test's one store.
    db = worker_db if worker_db.startswith("postgresql://") else worker_db.replace("worker.db", "worker{chain}.db")
    if not worker_db.startswith("postgresql://"):
        Path(worker_db).rename(Path(db.replace("{chain}", "solana")))
    config = tmp_path / "tessera.toml"
    config.write_text(f'[chains.solana]\nkind = "solana"\ndomain = 2\nrpc_urls = ["http://127.0.0.1:1"]\n'
                      f'program_id = "J7a8RKTowgMFppj3w8dSERo3hSTFigoT4ZgyBWzPoFdR"\n\n[worker]\ndb = "{db}"\n')
    done = subprocess.run([sys.executable, "-m", "relay.cli", "reset-chain", "solana", "--worker", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "worker store: dropped chain solana's identity, cursor and 1 tasks" in done.stdout
    store = await WorkerStore.open(db.replace("{chain}", "solana"))
    try:
        assert await store.chain_identity("solana") is None and await store.all() == []
    finally:
        await store.close()
