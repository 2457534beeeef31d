"""Start a Solana localnet server for tests: in a subprocess (the real thing) or in-process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Sequence

from adapters.solana_localnet.errors import LocalnetError
from adapters.solana_localnet.ledger import LedgerConfig
from adapters.solana_localnet.server import LocalnetServer, ServerConfig

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningLocalnet:
    rpc_url: str
    ws_url: str
    faucet: str
    pid: int
    log_path: Path


@asynccontextmanager
async def running_solana_localnet(
    slot_ms: int = 400,
    finality_slots: int = 32,
    programs: Sequence[tuple[str, str | Path]] = (),
    host: str = "127.0.0.1",
    start_timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[RunningLocalnet]:
    """`python -m adapters.solana_localnet` on free ports; stopped (and reaped) on exit."""
    with tempfile.TemporaryDirectory(prefix="solana-localnet-") as tmp:
        ready_file = Path(tmp) / "ready.json"
        log_path = Path(tmp) / "server.log"
        argv = [
            sys.executable, "-m", "adapters.solana_localnet",
            "--host", host, "--rpc-port", "0", "--ws-port", "0",
            "--slot-ms", str(slot_ms), "--finality-slots", str(finality_slots),
            "--ready-file", str(ready_file), *extra_args,
        ]
        for program_id, path in programs:
            argv += ["--program", f"{program_id}={path}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
        with open(log_path, "wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=_PROJECT_ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log_file
            )
        try:
            ready = await _wait_ready(proc, ready_file, log_path, start_timeout)
            yield RunningLocalnet(ready["rpc_url"], ready["ws_url"], ready["faucet"], proc.pid, log_path)
        finally:
            await _stop(proc)


async def _wait_ready(proc: asyncio.subprocess.Process, ready_file: Path, log_path: Path, timeout: float) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if ready_file.exists():
            return json.loads(ready_file.read_text())
        if proc.returncode is not None:
            raise LocalnetError(
                f"the Solana localnet server exited with code {proc.returncode} before it was ready: "
                f"{log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            await asyncio.wait_for(proc.wait(), 0.05)
        except asyncio.TimeoutError:
            pass
    raise LocalnetError(f"the Solana localnet server was not ready within {timeout:.0f}s; see {log_path}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def running_solana_localnet_in_process(
    slot_ms: int = 400, finality_slots: int = 32, max_transactions: int = 20_000, **server_kw: object
) -> AsyncIterator[LocalnetServer]:
    """The same server on the current event loop, for unit tests that want to reach into the ledger."""
    config = ServerConfig(
        host="127.0.0.1",
        rpc_port=0,
        ws_port=0,
        ledger=LedgerConfig(slot_ms=slot_ms, finality_slots=finality_slots, max_transactions=max_transactions),
        **server_kw,  # type: ignore[arg-type]
    )
    async with LocalnetServer(config) as server:
        yield server
