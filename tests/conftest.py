"""Fixtures shared by the unit and the end-to-end tests. Helpers (waiting, fakes, chain harnesses) are
in tests/support/; fixtures used only by one suite are in tests/unit/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, settings

from adapters.evm import deploy as evm_deploy
from adapters.solana_localnet import ledger as localnet_ledger
from relay.ports import port_range
from tests.support.nats import nats_server  # noqa: F401  (the session's nats-server -js, tests/support/nats.py)
from tests.support.postgres import PostgresServer
from tests.support.solana import MovableClock

# Hypothesis profiles (the fuzz budgets are in tests/support/fuzzing.py). `ci`, the default, is
# derandomised: every run draws the same examples, so a CI failure reproduces anywhere; `dev`
# (HYPOTHESIS_PROFILE=dev) draws fresh random examples and ten times as many.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The suite runs on parallel workers (pytest-xdist, scripts/run-tests.sh): each worker hands out the
# ports of the processes it starts from its own slice of relay/ports.py's range, so two workers never
# pick the same free port in the moment before its process binds it.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and "TESSERA_PORT_RANGE" not in os.environ:
    _index, _count = int(_WORKER[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _low, _high = port_range()
    _slice = (_high - _low) // max(_count, 1)
    os.environ["TESSERA_PORT_RANGE"] = f"{_low + _index * _slice}-{_low + (_index + 1) * _slice}"


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


# Modules whose tests start `relay localnet up` / `relay up` / `relay demo` with some of the
# localnet's default ports (7101.., 7300, 7400, 7410): on parallel workers they run on one worker, one
# after another (`--dist loadgroup`), as they would serially.
_DEFAULT_PORT_MODULES = {"test_localnet_cli.py", "test_config_check.py", "test_stack.py", "test_localnet_restart.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in _DEFAULT_PORT_MODULES:
            item.add_marker(pytest.mark.xdist_group("localnet-default-ports"))


@pytest.fixture
def movable_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[MovableClock]:
    """The in-process Solana localnet's clock, movable (tests/support/solana.py MovableClock)."""
    clock = MovableClock()
    monkeypatch.setattr(localnet_ledger, "time", SimpleNamespace(time=clock.time))
    yield clock
