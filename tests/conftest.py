"""Fixtures shared by the unit and the end-to-end tests. Helpers (waiting, fakes, chain harnesses) are
in tests/support/; fixtures used only by one suite are in tests/unit/conftest.py."""

from __future__ import annotations

import pytest

from adapters.evm import deploy as evm_deploy


@pytest.fixture(scope="session")
def evm_contracts() -> None:
    """The Solidity contracts compiled (once per run; a no-op when the build is current)."""
    evm_deploy.ensure_built()
