"""The daemons' wiring: each module builds one long-running process from the config (chains through
`adapters.registry`, services from relay/) and runs it with `relay.lifecycle.run_daemon`.

This package and relay/cli/, relay/sdk.py and the localnet modules are the only parts of relay/
allowed to import adapters/ (pyproject.toml's import-linter contracts)."""
