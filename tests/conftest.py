"""Fixtures shared by the unit and the end-to-end tests. Helpers (waiting, fakes, chain harnesses) are
in tests/support/; fixtures used only by one suite are in tests/unit/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from adapters.evm import deploy as evm_deploy
from tests.support.nats import nats_server  # noqa: F401  (the session's nats-server -js, tests/support/nats.py)
from tests.support.postgres import PostgresServer

# Hypothesis profiles (the fuzz budgets are in tests/support/fuzzing.py). `ci`, the default, is
# derandomised: every run draws the same examples, so a CI failure reproduces anywhere; `dev`
# (HYPOTHESIS_PROFILE=dev) draws fresh random examples and ten times as many.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def evm_contracts() -> None:
    """The Solidity contracts compiled, once per run before any test (a no-op when the build is
    current): every EVM adapter reads its ABIs from forge's artifacts, and in a fresh clone whichever
    test builds an adapter first must not find them missing."""
    evm_deploy.ensure_built()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this run's own (tests/support/postgres.py), started on first use;
    `postgres.create_database()` gives each test a fresh database."""
    server = PostgresServer.start()
    yield server
    server.stop()
