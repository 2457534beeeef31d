"""Child processes of the localnet supervisor (`relay localnet up`, `relay up`; relay/devstack.py
for the tests): started, watched, and never left behind.

Children get PR_SET_PDEATHSIG, so even a supervisor killed with SIGKILL takes them along.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

from attest.files import write_atomic
from relay.errors import LocalnetError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def ensure_port_free(host: str, port: int, what: str, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LocalnetError(
                    f"port {port} on {host} is in use ({what} needs it): stop the process holding it "
                    f"(`relay localnet down`, or `ss -ltnp 'sport = :{port}'` to find it) or pass {flag}"
                ) from None
            raise LocalnetError(f"cannot bind {host}:{port} for {what}: {exc.strerror}") from None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def pid_cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode(errors="replace").split("\0")
    except OSError:
        return []


def terminate_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL. Silent if the process is already gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def json_rpc_call(url: str, method: str, params: list | None = None, timeout: float = 2.0) -> object:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.post(url, json=body) as resp:
            data = await resp.json(content_type=None)
    if "error" in data:
        raise LocalnetError(f"{url} {method}: {data['error']}")
    return data["result"]


async def http_health(url: str, timeout: float = 2.0) -> str:
    """"ok" when GET url answers 2xx, else what went wrong (for status tables)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url) as resp:
                return "ok" if resp.status < 300 else f"HTTP {resp.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return f"unreachable: {exc or type(exc).__name__}"


@dataclass
class ChildProcess:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    health_url: str | None = None  # GET it for /health (`relay localnet status`); None: no HTTP server
    process: subprocess.Popen | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)  # where this run's lines start in the (appended) log

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab", buffering=0)
        self._log_offset = log.tell()
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=_die_with_parent,
            )
        except FileNotFoundError:
            raise LocalnetError(f"cannot start {self.name}: {self.argv[0]} not found (run `make setup`)") from None
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logged(self, event: str) -> bool:
        """Whether this run logged `event` (a JSON log line's "event"; TESSERA_LOG_FORMAT=json)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return False
        for line in lines:
            try:
                if json.loads(line).get("event") == event:
                    return True
            except (ValueError, AttributeError):
                continue
        return False

    async def wait_logged(self, event: str, timeout: float = 30.0) -> None:
        """Ready once the process logged `event` (for daemons without an HTTP server)."""

        async def probe() -> None:
            if not self.logged(event):
                raise LocalnetError(f"{event!r} not logged yet")

        await self.wait_ready(probe, timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_ready(self, probe: Callable[[], Awaitable[object]], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise LocalnetError(
                    f"{self.name} exited with code {self.process.returncode if self.process else '?'} "
                    f"while starting; last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                await probe()
                return
            except Exception as exc:  # not listening yet
                last_error = exc
            await asyncio.sleep(0.1)
        raise LocalnetError(f"{self.name} did not become ready within {timeout:.0f}s ({last_error}); see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def describe(self) -> dict:
        return {"pid": self.pid, "argv": self.argv, "log": str(self.log_path),
                **({"health_url": self.health_url} if self.health_url else {})}


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n", 0o644)
