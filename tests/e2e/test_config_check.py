"""`relay config check --online` against the localnet: the generated config passes, and one edited
address fails with a message naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
from relay.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


def relay(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": "warning"}
    return subprocess.run([sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_config_check_online_on_the_localnet(tmp_path: Path) -> None:
    state_dir = tmp_path / "net"
    net = ["--state-dir", str(state_dir)]
    up = relay("localnet", *net, "up", "--detach", "--evm-port", str(_free_port()), "--solana-rpc-port",
               str(_free_port()), "--solana-ws-port", str(_free_port()), "--slot-ms", "100", "--finality-slots", "4")
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        config_file = state_dir / "config.toml"
        ok = relay("config", "check", "--online", "--config", str(config_file))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "OK, 2 chains, checked offline and online" in ok.stdout

        # One address edited: the Gateway's now points at the RecordingReceiver, a contract too.
        data = tomllib.loads(config_file.read_text())
        contracts = data["chains"]["evm"]["contracts"]
        gateway, receiver = contracts["Gateway"], contracts["RecordingReceiver"]
        contracts["Gateway"] = receiver
        edited = state_dir / "edited.toml"
        edited.write_text(tomli_w.dumps(data))
        bad = relay("config", "check", "--online", "--config", str(edited))
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert (f"chains.evm.contracts.Gateway ({receiver}): the code there is not Gateway as contracts/evm builds it"
                in bad.stdout), bad.stdout
        assert gateway not in bad.stdout

        # A Solana program id that is not a program, and an endpoint that is down.
        data = tomllib.loads(config_file.read_text())
        data["chains"]["solana"]["program_id"] = data["chains"]["solana"]["accounts"]["outbox"]
        dead = f"http://127.0.0.1:{_free_port()}"
        data["chains"]["evm"]["rpc_urls"].append(dead)
        edited.write_text(tomli_w.dumps(data))
        bad = relay("config", "check", "--online", "--config", str(edited))
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "chains.solana.program_id (" in bad.stdout and "not a program deployed through the upgradeable loader" in bad.stdout
        assert f"chains.evm.rpc_urls[1] ({dead}): unreachable" in bad.stdout
        assert "2 problems" in bad.stdout, bad.stdout
    finally:
        down = relay("localnet", *net, "down")
        assert down.returncode == 0, down.stderr
