"""`relay localnet`: real chains on this machine (anvil + the Solana localnet server), deployed and
configured, with their state in one directory that every other command reads.

State directory (default `.tessera/localnet`, or `--state-dir` / `TESSERA_LOCALNET_DIR`):
  localnet.json   supervisor and child pids, URLs, status (starting | ready | stopping)
  config.toml     the generated Tessera config (chains, domains, contract addresses, program id, keys)
  keys/           generated keys (EVM deployer, Solana payer/program keypairs, committee shares)
  logs/           one log per process
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from relay.errors import LocalnetError
from relay.log import get_logger
from relay.processes import (
    ChildProcess,
    ensure_port_free,
    json_rpc_call,
    pid_alive,
    pid_cmdline,
    terminate_pid,
    write_json_atomic,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_BIN = REPO_ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
EVM_CHAIN_ID = 31337
# Hyperlane's convention for a local Sealevel chain; any uint32 not used by another chain works.
SOLANA_LOCALNET_DOMAIN = 13375
STATE_FILE = "localnet.json"
CONFIG_FILE = "config.toml"

log = get_logger("localnet")


def default_state_dir() -> Path:
    return Path(os.environ.get("TESSERA_LOCALNET_DIR", ".tessera/localnet"))


@dataclass
class LocalnetOptions:
    state_dir: Path = field(default_factory=default_state_dir)
    host: str = "127.0.0.1"
    evm_port: int = 8545
    solana_rpc_port: int = 8899
    solana_ws_port: int = 8900
    slot_ms: int = 400
    finality_slots: int = 32
    # Interval mining, so EVM confirmations keep coming without traffic (None: mine on every tx).
    evm_block_time: float | None = 0.5
    committee_n: int = 4
    committee_t: int = 3
    attester_base_port: int = 7101  # member i listens on base + i - 1
    relayer_port: int = 7300
    feed_server_port: int = 7400
    # Write the localnet's [feeds] (ETH/USD, BTC/USD) into the config, so attesters run feed rounds.
    feeds: bool = True

    @property
    def evm_rpc_url(self) -> str:
        return f"http://{self.host}:{self.evm_port}"

    @property
    def evm_ws_url(self) -> str:
        return f"ws://{self.host}:{self.evm_port}"

    @property
    def solana_rpc_url(self) -> str:
        return f"http://{self.host}:{self.solana_rpc_port}"

    @property
    def solana_ws_url(self) -> str:
        return f"ws://{self.host}:{self.solana_ws_port}"


def read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise LocalnetError(f"{state_dir / STATE_FILE} is corrupt ({exc}); run `relay localnet down --force`") from None


def _supervisor_running(state: dict | None) -> bool:
    return bool(state) and pid_alive(state.get("supervisor_pid", -1)) and _is_ours(state["supervisor_pid"])


def _is_ours(pid: int) -> bool:
    # Guards against a recycled pid: the supervisor's command line names this module's entry.
    return any("relay" in part or "localnet" in part for part in pid_cmdline(pid))


class Localnet:
    """Supervises the chain processes for as long as `run()` runs."""

    def __init__(self, options: LocalnetOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.children: list[ChildProcess] = []
        self.state: dict = {}
        self._owns_state = False  # set once we have checked that no other localnet uses state_dir

    def _check_ports(self) -> None:
        o = self.options
        ensure_port_free(o.host, o.evm_port, "anvil", "--evm-port")
        ensure_port_free(o.host, o.solana_rpc_port, "the Solana localnet RPC", "--solana-rpc-port")
        ensure_port_free(o.host, o.solana_ws_port, "the Solana localnet WebSocket", "--solana-ws-port")

    def _save_state(self, status: str) -> None:
        self.state.update(
            status=status,
            supervisor_pid=os.getpid(),
            processes={c.name: c.describe() for c in self.children if c.process is not None},
            updated_at=time.time(),
        )
        write_json_atomic(self.state_dir / STATE_FILE, self.state)

    async def start(self) -> None:
        from adapters import localnet as chains  # chain-specific steps live in adapters/

        existing = read_state(self.state_dir)
        if _supervisor_running(existing):
            raise LocalnetError(
                f"a localnet is already running from {self.state_dir} (pid {existing['supervisor_pid']}): "
                "`relay localnet status` shows it, `relay localnet down` stops it"
            )
        self._check_ports()
        self._owns_state = True
        o = self.options
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self.state = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o).items()},
            "evm": {"rpc_url": o.evm_rpc_url, "ws_url": o.evm_ws_url, "chain_id": EVM_CHAIN_ID},
            "solana": {"rpc_url": o.solana_rpc_url, "ws_url": o.solana_ws_url, "domain": SOLANA_LOCALNET_DOMAIN},
            "started_at": time.time(),
        }
        self._save_state("starting")

        anvil = self._spawn("anvil", chains.anvil_argv(ANVIL_BIN, o.host, o.evm_port, EVM_CHAIN_ID, o.evm_block_time))
        solana = self._spawn(
            "solana",
            chains.solana_argv(o.host, o.solana_rpc_port, o.solana_ws_port, o.slot_ms, o.finality_slots),
        )
        self._save_state("starting")
        await asyncio.gather(
            anvil.wait_ready(lambda: json_rpc_call(o.evm_rpc_url, "eth_chainId")),
            solana.wait_ready(lambda: json_rpc_call(o.solana_rpc_url, "getHealth")),
        )
        log.info("chains up", evm=o.evm_rpc_url, solana=o.solana_rpc_url)

        deployment = await chains.deploy_all(o, self.state_dir, EVM_CHAIN_ID, SOLANA_LOCALNET_DOMAIN)
        self.state["deployment"] = deployment
        self._save_state("ready")
        log.info("localnet ready", state_dir=str(self.state_dir), config=str(self.state_dir / CONFIG_FILE))

    def _spawn(self, name: str, argv: list[str]) -> ChildProcess:
        child = ChildProcess(name=name, argv=argv, log_path=self.state_dir / "logs" / f"{name}.log")
        child.start()
        self.children.append(child)
        return child

    async def watch(self, stop: asyncio.Event) -> None:
        """Wait for a stop request; a child dying on its own is an error worth stopping for."""
        while not stop.is_set():
            for child in self.children:
                if not child.alive():
                    log.error("process exited", name=child.name, code=child.process.returncode, log=str(child.log_path))
                    stop.set()
                    raise LocalnetError(f"{child.name} exited unexpectedly; last lines:\n{child.log_tail()}")
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        if not self._owns_state:
            return  # start() refused before touching anything: another localnet's state is not ours
        if self.state:
            try:
                self._save_state("stopping")
            except OSError:
                pass
        for child in reversed(self.children):
            child.stop()
        try:
            (self.state_dir / STATE_FILE).unlink()
        except FileNotFoundError:
            pass
        log.info("localnet stopped")


async def run_foreground(options: LocalnetOptions) -> None:
    net = Localnet(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await net.start()
        print(summary(read_state(net.state_dir) or {}, net.state_dir), flush=True)
        print("localnet running; Ctrl-C stops it", flush=True)
        await net.watch(stop)
    finally:
        net.stop()


def start_detached(options: LocalnetOptions, argv: list[str], timeout: float = 120.0) -> dict:
    """Run `relay localnet up` (without --detach) as a session leader and wait until it is ready."""
    state_dir = options.state_dir.resolve()
    existing = read_state(state_dir)
    if _supervisor_running(existing):
        raise LocalnetError(
            f"a localnet is already running from {state_dir} (pid {existing['supervisor_pid']}): "
            "`relay localnet down` stops it"
        )
    # Check ports here too, so the error reaches the user's terminal directly.
    ensure_port_free(options.host, options.evm_port, "anvil", "--evm-port")
    ensure_port_free(options.host, options.solana_rpc_port, "the Solana localnet RPC", "--solana-rpc-port")
    ensure_port_free(options.host, options.solana_ws_port, "the Solana localnet WebSocket", "--solana-ws-port")
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "logs" / "supervisor.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TESSERA_LOG_FORMAT": "json"},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise LocalnetError(f"the localnet failed to start (exit {proc.returncode}); {log_path}:\n{tail}")
        state = read_state(state_dir)
        if state and state.get("status") == "ready" and state.get("supervisor_pid") == proc.pid:
            return state
        time.sleep(0.2)
    terminate_pid(proc.pid)
    raise LocalnetError(f"the localnet did not become ready within {timeout:.0f}s; see {log_path}")


def stop_detached(state_dir: Path, timeout: float = 15.0) -> bool:
    """Stop a localnet started from state_dir. Returns False if none was running."""
    state_dir = state_dir.resolve()
    state = read_state(state_dir)
    if not state:
        return False
    pids = [p["pid"] for p in state.get("processes", {}).values()]
    supervisor = state.get("supervisor_pid")
    if supervisor and pid_alive(supervisor) and _is_ours(supervisor):
        terminate_pid(supervisor, timeout)
    # Whatever survived the supervisor (it was SIGKILLed, say) is stopped here; pids are checked
    # against the recorded command line so a recycled pid is never hit.
    for name, proc in state.get("processes", {}).items():
        pid = proc["pid"]
        if pid_alive(pid) and pid_cmdline(pid)[:1] == proc["argv"][:1]:
            terminate_pid(pid, timeout)
    try:
        (state_dir / STATE_FILE).unlink()
    except FileNotFoundError:
        pass
    return bool(pids) or bool(supervisor)


async def status(state_dir: Path) -> tuple[bool, str]:
    state_dir = state_dir.resolve()
    state = read_state(state_dir)
    if not state:
        return False, f"no localnet running from {state_dir} (start one with `relay localnet up`)"
    rows = [("component", "pid", "process", "endpoint", "health")]
    all_ok = _supervisor_running(state)
    rows.append(("supervisor", str(state.get("supervisor_pid")), "alive" if all_ok else "dead", "-", state.get("status", "?")))
    probes = {
        "anvil": (state["evm"]["rpc_url"], "eth_blockNumber"),
        "solana": (state["solana"]["rpc_url"], "getSlot"),
    }
    for name, proc in state.get("processes", {}).items():
        alive = pid_alive(proc["pid"])
        url, method = probes.get(name, ("-", None))
        health = "-"
        if alive and method:
            try:
                result = await json_rpc_call(url, method)
                health = f"ok ({method}={int(result, 16) if isinstance(result, str) else result})"
            except Exception as exc:
                health = f"unreachable: {exc}"
                all_ok = False
        all_ok = all_ok and alive
        rows.append((name, str(proc["pid"]), "alive" if alive else "dead", url, health))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)
    return all_ok, f"localnet at {state_dir} ({state.get('status')})\n{table}\nconfig: {state_dir / CONFIG_FILE}"


def summary(state: dict, state_dir: Path) -> str:
    dep = state.get("deployment", {})
    lines = [
        f"EVM     {state['evm']['rpc_url']}  chain id {state['evm']['chain_id']}",
        f"Solana  {state['solana']['rpc_url']}  ws {state['solana']['ws_url']}  domain {state['solana']['domain']}",
    ]
    for name, address in dep.get("evm_contracts", {}).items():
        lines.append(f"  EVM contract   {name:<20} {address}")
    if dep.get("solana_program_id"):
        lines.append(f"  Solana program tessera              {dep['solana_program_id']}")
    lines.append(f"config  {state_dir / CONFIG_FILE}")
    return "\n".join(lines)
