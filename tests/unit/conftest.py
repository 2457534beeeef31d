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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A relayer store in a fresh SQLite file, closed after the test."""
    s = await Store.open(tmp_path / "relayer.db")
    yield s
    await s.close()
