# Tessera: the two commands a fresh machine needs are `make demo` and `make test`.
# Each installs what it needs: Python packages into .venv/, the pinned npm toolchain
# (anvil, forge, cast, solcjs) from package-lock.json, and Debian's clang-16 and postgresql when root.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
FORGE  := node_modules/@foundry-rs/forge-linux-amd64/bin/forge
PYTEST_ARGS ?=

.PHONY: setup demo test test-python test-forge bench solana-program clean help

help:
	@echo "make demo   - set up, start the embedded localnet and run the main job"
	@echo "make test   - set up and run every test (pytest + forge)"
	@echo "make bench  - run the benchmarks under bench/"
	@echo "make solana-program - rebuild contracts/solana/tessera.so with clang-16"

setup: $(VENV)/.installed node_modules/.installed .clang-checked .nats-checked .postgres-checked .chromium-checked

$(VENV)/.installed: pyproject.toml
	@scripts/check-python.sh $(PYTHON)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev,fast]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js >= 18 with npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.clang-checked:
	@scripts/ensure-clang.sh

.nats-checked:
	@scripts/ensure-nats.sh

.postgres-checked:
	@scripts/ensure-postgres.sh

.chromium-checked:
	@scripts/ensure-chromium.sh

demo: setup
	$(VENV)/bin/relay demo

test: setup
	@scripts/run-tests.sh $(PYTEST_ARGS)

test-python: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-forge: setup
	cd contracts/evm && ../../$(FORGE) test

bench: setup
	$(PY) bench/localnet_rpc.py
	$(PY) bench/attest.py
	$(PY) bench/evm_verify_gas.py
	$(PY) bench/solana_verify_cu.py
	$(PY) bench/e2e.py
	$(PY) bench/tasks.py
	$(PY) bench/solana_tasks_cu.py
	$(PY) bench/feed_rounds.py --sizes 4 7
	$(PY) bench/feed_fanout.py
	$(PY) bench/feed_fanout_nats.py
	$(PY) bench/feeds_onchain.py
	$(PY) bench/solana_feeds_cu.py

solana-program: setup
	$(PY) contracts/solana/build.py

clean:
	rm -rf $(VENV) node_modules .clang-checked .nats-checked .postgres-checked .chromium-checked contracts/evm/out contracts/evm/cache .tessera
