"""Fixtures shared by the unit test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.store import Store
from tests.support import solana
from tests.support.committee import Dealt, deal


@pytest.fixture
def chain() -> solana.Chain:
    """LiteSVM with the Tessera program deployed (no committee yet)."""
    return solana.deployed_chain()


@pytest.fixture
def committee(chain: solana.Chain) -> solana.Chain:
    """The `chain` fixture with its committee initialised (ALICE's key, epoch 1)."""
    return solana.with_committee(chain)


@pytest.fixture(scope="module")
def dealt() -> Dealt:
    """A 2-of-3 committee dealt at epoch 7, with its shares (a module-wide one: dealing is slow)."""
    return deal()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh store lives: an SQLite file, or a new database on the run's PostgreSQL server;
    tests taking it (or `store`) run against both engines."""
    if request.param == "sqlite":
        return str(tmp_path / "relayer.db")
    return request.getfixturevalue("postgres").create_database("store")


@pytest.fixture
async def store(db_location: str) -> AsyncIterator[Store]:
    """A relayer store in a fresh SQLite file or PostgreSQL database, closed after the test."""
    s = await Store.open(db_location)
    yield s
    await s.close()
