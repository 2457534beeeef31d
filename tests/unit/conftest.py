"""Fixtures shared by the unit test modules."""

from __future__ import annotations

import pytest

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
