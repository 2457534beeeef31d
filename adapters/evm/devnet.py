"""anvil (Foundry's EVM node) as a managed child process: start, wait until it answers, stop.

The binary comes from npm (`@foundry-rs/anvil-linux-amd64`, installed by `make setup`). Every
method has a synchronous form and an async one (`start`/`astart`, `stop`/`astop`); the async ones
run the blocking parts in a thread so an event loop keeps serving while anvil boots.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.log import get_logger


def _log() -> Any:
    # Resolved per call: a logger bound at import time would ignore a configure_logging() run later.
    return get_logger("anvil")


REPO_ROOT = Path(__file__).resolve().parents[2]
ANVIL_BIN = REPO_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8545
DEFAULT_CHAIN_ID = 31337
# anvil's default mnemonic: its dev accounts are public knowledge, for localnets only.
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_ACCOUNTS = 10
# The private keys of anvil's dev accounts 0-5 for DEFAULT_MNEMONIC (derived once: deriving them is
# slow). Index 0 deploys, 1 relays, 2 trades on the market pool, 3 is the SDK user, 4-5 spare
# relayers, 5 the default localnet worker. Public knowledge: never use them outside a localnet.
ANVIL_DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
]


class AnvilError(RuntimeError):
    """anvil could not be started or stopped."""


class AnvilNotInstalledError(AnvilError):
    def __init__(self, binary: Path) -> None:
        super().__init__(f"anvil binary not found at {binary}: run `make setup` (npm ci) to install anvil")


class PortInUseError(AnvilError):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"port {port} on {host} is in use: stop the process holding it or choose another port"
        )
        self.host = host
        self.port = port


class AnvilStartError(AnvilError):
    """anvil exited or did not answer in time; the message carries the tail of its output."""


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do (anvil included): connections in TIME_WAIT from a previous run do not
        # block a new listener, only a live socket does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def dev_private_keys(mnemonic: str = DEFAULT_MNEMONIC, count: int = DEFAULT_ACCOUNTS) -> list[str]:
    """The keys anvil funds at start: BIP-44 path m/44'/60'/0'/0/i of its mnemonic."""
    return list(_derive_keys(mnemonic, count))


@functools.lru_cache(maxsize=8)
def _derive_keys(mnemonic: str, count: int) -> tuple[str, ...]:
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return tuple(
        "0x" + Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}").key.hex().removeprefix("0x")
        for i in range(count)
    )


def _rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 2.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise AnvilError(f"{method} failed: {reply['error']}")
    return reply["result"]


@dataclass
class AnvilProcess:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    chain_id: int = DEFAULT_CHAIN_ID
    block_time: float | None = None  # None: a block per transaction
    state_dir: Path | None = None  # anvil dumps its chain state there on exit and reloads it on start
    accounts: int = DEFAULT_ACCOUNTS
    mnemonic: str = DEFAULT_MNEMONIC
    binary: Path = ANVIL_BIN
    startup_timeout: float = 30.0
    stop_timeout: float = 10.0  # after SIGTERM, before SIGKILL
    extra_args: list[str] = field(default_factory=list)

    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_path: Path | None = field(default=None, init=False, repr=False)
    _log_is_temporary: bool = field(default=False, init=False, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def private_keys(self) -> list[str]:
        return dev_private_keys(self.mnemonic, self.accounts)

    def argv(self) -> list[str]:
        argv = [
            str(self.binary),
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--accounts", str(self.accounts),
            "--mnemonic", self.mnemonic,
        ]
        if self.block_time:
            argv += ["--block-time", str(self.block_time)]
        if self.state_dir is not None:
            argv += ["--state", str(self.state_dir / "anvil-state.json")]
        return argv + self.extra_args

    # --- sync lifecycle ------------------------------------------------------------------

    def start(self) -> list[str]:
        """Starts anvil and returns the funded dev accounts' private keys once it answers."""
        if self.running:
            return self.private_keys
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise AnvilNotInstalledError(self.binary)
        if not port_is_free(self.host, self.port):
            raise PortInUseError(self.host, self.port)
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._log_path, self._log_is_temporary = self.state_dir / "anvil.log", False
        else:
            fd, name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
            os.close(fd)
            self._log_path, self._log_is_temporary = Path(name), True
        # A file, not a pipe: nobody reads anvil's output while it runs, and a full pipe would block it.
        with open(self._log_path, "ab") as out:
            self._process = subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        _log().debug("anvil starting", pid=self._process.pid, rpc_url=self.rpc_url)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        _log().info("anvil ready", pid=self._process.pid, rpc_url=self.rpc_url, chain_id=self.chain_id)
        return self.private_keys

    def stop(self, timeout: float | None = None) -> None:
        timeout = self.stop_timeout if timeout is None else timeout
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGTERM first: anvil writes its state file (--state) on a clean exit.
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _log().debug("anvil stopped", pid=process.pid, returncode=process.returncode)
        elif process is not None:
            process.wait()
        if self._log_is_temporary and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                output = self._output_tail()
                if "Address already in use" in output or "address already in use" in output:
                    raise PortInUseError(self.host, self.port)
                raise AnvilStartError(f"anvil exited with status {code} before answering:\n{output}")
            try:
                chain_id = int(_rpc(self.rpc_url, "eth_chainId", timeout=1.0), 16)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                chain_id = None
            if chain_id is not None:
                if chain_id != self.chain_id:
                    raise AnvilStartError(
                        f"the node on {self.rpc_url} reports chain id {chain_id}, expected {self.chain_id}"
                    )
                return
            if time.monotonic() > deadline:
                raise AnvilStartError(
                    f"anvil did not answer eth_chainId on {self.rpc_url} within {self.startup_timeout:.0f} s:\n"
                    + self._output_tail()
                )
            time.sleep(0.05)

    def _output_tail(self, lines: int = 20) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> AnvilProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- async lifecycle -----------------------------------------------------------------

    async def astart(self) -> list[str]:
        return await asyncio.to_thread(self.start)

    async def astop(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.stop, timeout)

    async def __aenter__(self) -> AnvilProcess:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()


@contextlib.asynccontextmanager
async def running_anvil(**options: Any) -> AsyncIterator[AnvilProcess]:
    """anvil on a free port of 127.0.0.1 unless `port` is given; stopped on exit whatever happens."""
    options.setdefault("host", DEFAULT_HOST)
    pick_port = "port" not in options
    for attempt in range(3):
        if pick_port:
            options["port"] = free_port(options["host"])
        node = AnvilProcess(**options)
        try:
            await node.astart()
            break
        except PortInUseError:
            # Another process took the free port between our probe and anvil's bind.
            if not pick_port or attempt == 2:
                raise
    try:
        yield node
    finally:
        await node.astop()
