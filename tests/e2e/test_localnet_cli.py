"""`relay localnet up --detach | status | down` as a user runs them: real processes, real chains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relay.config import load_config
from relay.localnet import smoke
from relay.processes import pid_alive
from relay.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


def relay(*args: str, state_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": "warning"}
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", "localnet", "--state-dir", str(state_dir), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.fixture
def ports() -> list[str]:
    return ["--evm-port", str(_free_port()), "--solana-rpc-port", str(_free_port()),
            "--solana-ws-port", str(_free_port()), "--slot-ms", "100", "--finality-slots", "4"]


async def test_up_detach_status_smoke_down(tmp_path: Path, ports: list[str]) -> None:
    """Three chains (`--evm-chains 2`): two anvils and the Solana localnet server."""
    state_dir = tmp_path / "net"
    evm2_port = _free_port()
    up = relay("up", "--detach", *ports, "--evm-chains", "2", "--evm-extra-port", str(evm2_port), state_dir=state_dir)
    assert up.returncode == 0, up.stderr + up.stdout
    assert "localnet running in the background" in up.stdout
    assert f"evm2    evm     http://127.0.0.1:{evm2_port}" in up.stdout and "domain 31338" in up.stdout
    state = json.loads((state_dir / "localnet.json").read_text())
    assert set(state["processes"]) == {"anvil", "anvil-evm2", "solana"}
    pids = [state["supervisor_pid"]] + [p["pid"] for p in state["processes"].values()]
    try:
        assert all(pid_alive(pid) for pid in pids)
        status = relay("status", state_dir=state_dir)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("ok (eth_blockNumber=") == 2 and "ok (getSlot=" in status.stdout

        config = load_config(state_dir / "config.toml")
        assert list(config.chains) == ["evm", "evm2", "solana"]
        assert (config.chains["evm2"].chain_id, config.chains["evm2"].domain) == (31338, 31338)
        assert config.chains["evm2"].rpc_urls == [f"http://127.0.0.1:{evm2_port}"]
        for name in ("evm", "evm2"):
            assert {"Probe", "CommitteeVerifier", "Gateway", "RecordingReceiver", "TaskBoardV2",
                    "FeedStore", "MarketPool"} <= set(config.chains[name].contracts)
            assert "TaskBoard" not in config.chains[name].contracts  # task protocol v1 is retired
        assert config.chains["solana"].program_id
        assert config.feed_push.targets == ["evm", "evm2", "solana"]
        assert [s.name for s in config.feeds["ETH/USD"].sources] == ["evm-pool", "evm2-pool", "recording"]

        # web3.py calls the deployed contracts, solana-py runs the deployed program, and a 3-of-4
        # committee signature verifies on every chain while a forged one is refused.
        rows = dict(await smoke(state_dir))
        assert rows["evm: Probe.set(42) + hash()"].startswith("ok")
        assert rows["evm2: Probe.set(42) + hash()"].startswith("ok")
        assert rows["solana: program probe (keccak into its account)"] == "ok"
        for name in ("evm", "evm2", "solana"):
            assert "forged signature refused" in rows[f"{name}: 3-of-4 BLS signature"]

        # A second localnet on the same ports fails clearly and leaves the first one intact.
        other = relay("up", "--detach", *ports, state_dir=tmp_path / "other")
        assert other.returncode == 1
        assert f"port {ports[1]} on 127.0.0.1 is in use (anvil needs it)" in other.stderr
        # The same state directory in the foreground: refused without touching the running one.
        again = relay("up", *ports, state_dir=state_dir)
        assert again.returncode == 1 and "already running" in again.stderr
        assert relay("status", state_dir=state_dir).returncode == 0
    finally:
        down = relay("down", state_dir=state_dir)
    assert down.returncode == 0 and "localnet stopped" in down.stdout
    assert not any(pid_alive(pid) for pid in pids), "a localnet process survived `down`"
    assert relay("status", state_dir=state_dir).returncode == 3


def test_killed_supervisor_takes_its_children_along(tmp_path: Path, ports: list[str]) -> None:
    state_dir = tmp_path / "net"
    assert relay("up", "--detach", *ports, state_dir=state_dir).returncode == 0
    state = json.loads((state_dir / "localnet.json").read_text())
    children = [p["pid"] for p in state["processes"].values()]
    os.kill(state["supervisor_pid"], 9)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not any(pid_alive(pid) for pid in children), "children outlived a SIGKILLed supervisor"
    # `down` cleans up the stale state file.
    assert relay("down", state_dir=state_dir).returncode == 0
    assert not (state_dir / "localnet.json").exists()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    from relay.errors import LocalnetError
    from relay.processes import ChildProcess

    child = ChildProcess("anvil", [str(tmp_path / "no-such-anvil")], tmp_path / "anvil.log")
    with pytest.raises(LocalnetError, match="not found \\(run `make setup`\\)"):
        child.start()


def test_relay_demo_runs_to_completion() -> None:
    """What `make demo` runs, as a user sees it."""
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "relay.cli", "demo"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-12000:]
    assert done.stdout.count("signature verified off-chain") == 4  # one per task's attestation
    assert "forged signature refused" in done.stdout  # the smoke checks
    assert "every task completed" in done.stdout
    assert "the ETH/USD feed reached both chains" in done.stdout
