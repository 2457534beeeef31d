#!/usr/bin/env bash
# Runs every test: pytest (unit + end-to-end against real anvil and the Solana localnet server)
# and forge. pytest's exit code 5 ("no tests collected") is a failure here, never a pass.
set -u
cd "$(dirname "$0")/.."
# The layers (pyproject.toml [tool.importlinter]): attest/ stands alone, services never import
# adapters/ or a chain library, no import cycles. A broken contract fails the run before any test.
.venv/bin/lint-imports --no-cache || { echo "error: the import-layer contracts do not hold (see above)"; exit 1; }
# The slowest tests are listed at the end of every run, so the 15-minute budget stays visible.
# Two workers (pytest-xdist; TESSERA_TEST_WORKERS=0 runs in this process): the end-to-end tests mostly
# wait on chains, and tests that use the localnet's default ports share one worker (tests/conftest.py).
.venv/bin/python -m pytest -n "${TESSERA_TEST_WORKERS:-2}" --dist loadgroup --durations=40 "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi
[ $rc -eq 0 ] || exit $rc
if [ -f contracts/evm/foundry.toml ]; then
  (cd contracts/evm && ../../node_modules/@foundry-rs/forge-linux-amd64/bin/forge test) || exit $?
fi
