"""The whole stack as a newcomer runs it (issue 16): `relay up --detach`, the README's commands as
written, `relay down` leaving nothing behind, and `up` again at once; `relay localnet down` then `up`
at once while connections the servers closed sit in TIME-WAIT on their ports. Real processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from relay.processes import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TESSERA_LOCALNET_DIR", "TESSERA_LOG_LEVEL")}
    return {**env, "TESSERA_LOG_FORMAT": "json"}


async def relay(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`relay ARGS` in `cwd` (so the default state directory, .tessera/localnet, is under it)."""
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "relay.cli", *args], cwd=cwd,
                                   capture_output=True, text=True, timeout=timeout, env=_env())


def _pids(state_dir: Path) -> list[int]:
    state = json.loads((state_dir / "localnet.json").read_text())
    return [state["supervisor_pid"], *(p["pid"] for p in state["processes"].values())]


async def test_localnet_down_then_up_at_once_reuses_ports_in_time_wait(tmp_path: Path) -> None:
    """Connections the Solana localnet server closed itself (a WebSocket subscriber, a keep-alive
    RPC client) leave TIME-WAIT entries on its ports; the next `up` must bind them anyway."""
    rpc_port, ws_port = _free_port(), _free_port()
    ports = ["--evm-port", str(_free_port()), "--solana-rpc-port", str(rpc_port), "--solana-ws-port", str(ws_port),
             "--slot-ms", "100", "--finality-slots", "4", "--no-feeds"]
    up = await relay("localnet", "up", "--detach", *ports, cwd=tmp_path)
    assert up.returncode == 0, up.stderr + up.stdout
    state_dir = tmp_path / ".tessera/localnet"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{ws_port}") as ws:
                await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "slotSubscribe"})
                assert "result" in await ws.receive_json(timeout=10)
                for _ in range(3):  # keep-alive: the connection stays open in the session's pool
                    async with session.post(f"http://127.0.0.1:{rpc_port}",
                                            json={"jsonrpc": "2.0", "id": 1, "method": "getSlot"}) as resp:
                        assert "result" in await resp.json()
                # The server goes away under the open connections: it closes them first.
                down = await relay("localnet", "down", cwd=tmp_path)
                assert down.returncode == 0, down.stderr
        again = await relay("localnet", "up", "--detach", *ports, cwd=tmp_path)
        assert again.returncode == 0, again.stderr + again.stdout
        status = await relay("localnet", "status", cwd=tmp_path)
        assert status.returncode == 0 and "ok (getSlot=" in status.stdout, status.stdout
    finally:
        pids = _pids(state_dir) if (state_dir / "localnet.json").exists() else []
        await relay("localnet", "down", cwd=tmp_path)
    assert not any(pid_alive(pid) for pid in pids)
