"""`relay localnet`: real chains on this machine (anvil + the Solana localnet server, optionally
more anvils), deployed and configured, with their state in one directory that every other command
reads.

The chains come from a plan (`plan(options)`): each planned chain is a `[chains.<name>]` table
without addresses plus its node's settings. For each one this module asks the chain's driver
(`adapters.registry.driver_for`) for its node's command line, starts and supervises the node, then
has the driver deploy Tessera on it (`deploy_devnet`), and writes the tables it returns into the
generated config. Nothing here knows what a chain kind needs beyond the table the plan writes.

State directory (default `.tessera/localnet`, or `--state-dir` / `TESSERA_LOCALNET_DIR`):
  localnet.json   supervisor and child pids, chains and their URLs, status (starting | ready | stopping);
                  `relay up` (relay/devstack.py) adds its daemons to the same processes
  config.toml     the generated Tessera config (chains, domains, contract addresses, program id, keys,
                  [worker] with its keys, funded accounts and payout addresses on every chain)
  keys/           generated keys (EVM deployer, Solana payer/program keypairs, committee shares, workers)
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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import attest
from adapters.registry import driver_for
from attest.committee import Committee
from attest.dealer import deal_to_directory
from attest.keystore import generate_key_file, load_share_for, read_key_file
from relay.aio import wait_event
from relay.config import (Chain, CommitteeRef, EvmChain, FeedPushSection, FeedRoundSection, FeedServerSection,
                          KeyRef, RelayerSection, SolanaChain, TesseraConfig, WorkerSection, allow_raw_keys, dump_config,
                          load_config)
from relay.envelope import Envelope
from relay.errors import LocalnetError
from relay.feeds.config import FeedConfig
from relay.interfaces import DevnetNode
from relay.log import get_logger
from relay.tasks.worker import generate_identity
from relay.processes import (
    ChildProcess,
    ensure_port_free,
    http_health,
    json_rpc_call,
    pid_alive,
    pid_cmdline,
    terminate_pid,
    write_json_atomic,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = REPO_ROOT / "configs/recordings"
EVM_CHAIN_ID = 31337  # the first EVM chain's; the k-th extra one (k = 1, 2, ...) gets EVM_CHAIN_ID + k
MAX_EVM_CHAINS = 8
# Hyperlane's convention for a local Sealevel chain; any uint32 not used by another chain works.
SOLANA_LOCALNET_DOMAIN = 13375
COMMITTEE_EPOCH = 1
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
    # EVM chains: "evm", then "evm2", "evm3", ... each its own anvil, chain id and domain.
    evm_chains: int = 1
    # Ports of the extra EVM chains' anvils, in order; one not given is evm_port + k for the k-th.
    evm_extra_ports: list[int] = field(default_factory=list)
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
    feed_push_port: int = 7410  # the pusher's /health and /metrics (wallet balances)
    # Write the localnet's [feeds] (ETH/USD, BTC/USD) into the config, so attesters run feed rounds.
    feeds: bool = True

    def evm_port_of(self, k: int) -> int:
        """The anvil port of the k-th EVM chain (0: "evm")."""
        if k == 0:
            return self.evm_port
        return self.evm_extra_ports[k - 1] if k - 1 < len(self.evm_extra_ports) else self.evm_port + k


@dataclass(frozen=True)
class PlannedChain:
    """One chain of the localnet: its config table before deployment and how to run its node."""

    name: str  # its name under [chains]
    process: str  # its node's process name (logs/<process>.log, `relay localnet status`)
    table: Chain  # the [chains.<name>] table without addresses (the driver's deploy_devnet fills them in)
    node: dict[str, Any]  # the node's own settings (ChainDriver.devnet_node)
    ports: tuple[tuple[int, str, str], ...]  # (port, who needs it, the flag that moves it)


def evm_chain_name(k: int) -> str:
    return "evm" if k == 0 else f"evm{k + 1}"


def plan(options: LocalnetOptions) -> list[PlannedChain]:
    """The localnet's chains: `options.evm_chains` anvils (chain id and domain 31337, 31338, ...) and
    the Solana localnet server."""
    o = options
    if not 1 <= o.evm_chains <= MAX_EVM_CHAINS:
        raise LocalnetError(f"--evm-chains must be between 1 and {MAX_EVM_CHAINS}, not {o.evm_chains}")
    chains = []
    for k in range(o.evm_chains):
        name, port, chain_id = evm_chain_name(k), o.evm_port_of(k), EVM_CHAIN_ID + k
        table = EvmChain(kind="evm", domain=chain_id, chain_id=chain_id, rpc_urls=[f"http://{o.host}:{port}"],
                         ws_urls=[f"ws://{o.host}:{port}"], confirmations=2)
        chains.append(PlannedChain(name, "anvil" if k == 0 else f"anvil-{name}", table,
                                   {"block_time": o.evm_block_time},
                                   ((port, "anvil" if k == 0 else f"anvil of {name}",
                                     "--evm-port" if k == 0 else "--evm-extra-port"),)))
    table = SolanaChain(kind="solana", domain=SOLANA_LOCALNET_DOMAIN, rpc_urls=[f"http://{o.host}:{o.solana_rpc_port}"],
                        ws_urls=[f"ws://{o.host}:{o.solana_ws_port}"], commitment="finalized")
    chains.append(PlannedChain("solana", "solana", table, {"slot_ms": o.slot_ms, "finality_slots": o.finality_slots},
                               ((o.solana_rpc_port, "the Solana localnet RPC", "--solana-rpc-port"),
                                (o.solana_ws_port, "the Solana localnet WebSocket", "--solana-ws-port"))))
    return chains


def check_ports(options: LocalnetOptions) -> None:
    seen: dict[int, str] = {}
    for chain in plan(options):
        for port, what, flag in chain.ports:
            if port in seen:
                raise LocalnetError(f"port {port} is planned for both {seen[port]} and {what}: pass {flag}")
            seen[port] = what
            ensure_port_free(options.host, port, what, flag)


def localnet_feeds(sources: Mapping[str, list[dict]] | None = None) -> dict[str, FeedConfig]:
    """The localnet's [feeds]: ETH/USD and BTC/USD from recordings, plus `sources` (feed id -> source
    tables) that chains offer (the EVM market's pool for ETH/USD), read first."""
    sources = sources or {}
    recording = {"kind": "file", "name": "recording"}
    return {
        "ETH/USD": FeedConfig(id="ETH/USD", description="Ether in US dollars (localnet pool + recording)", decimals=8,
                              sources=[*sources.get("ETH/USD", []),
                                       {**recording, "path": str(RECORDINGS / "eth_usd.jsonl")}],
                              min_sources=1, deviation_bps=50, heartbeat_s=60),
        "BTC/USD": FeedConfig(id="BTC/USD", description="Bitcoin in US dollars (recording)", decimals=8,
                              sources=[*sources.get("BTC/USD", []),
                                       {**recording, "path": str(RECORDINGS / "btc_usd.jsonl")}],
                              min_sources=1, deviation_bps=50, heartbeat_s=60),
    }


def deal_committee(options: LocalnetOptions, keys_dir: Path) -> Committee:
    """A trusted dealer is fine for a localnet; real committees run `relay keys dkg`."""
    committee_dir = keys_dir / "committee"
    committee_file = committee_dir / "committee.toml"
    key_file = keys_dir / "committee.key"
    endpoints = [f"http://{options.host}:{options.attester_base_port + i}" for i in range(options.committee_n)]
    if committee_file.exists() and key_file.exists():
        committee = Committee.load(committee_file)
        same_endpoints = [m.endpoint for m in committee.members] == endpoints
        if committee.n == options.committee_n and committee.t == options.committee_t and same_endpoints:
            return committee  # keep the committee across restarts of the same state directory
    secret = read_key_file(key_file) if key_file.exists() else generate_key_file(key_file)
    committee = deal_to_directory(committee_dir, options.committee_n, options.committee_t, COMMITTEE_EPOCH, secret,
                                  endpoints, force=True)
    log.info("committee dealt", n=committee.n, t=committee.t, epoch=committee.epoch)
    return committee


async def deploy_all(options: LocalnetOptions, state_dir: Path, chains: list[PlannedChain]) -> dict:
    """Every planned chain deployed by its driver (concurrently), and the config written."""
    keys_dir = state_dir / "keys"
    committee = deal_committee(options, keys_dir)
    feeds = localnet_feeds() if options.feeds else {}
    deployments = await asyncio.gather(*(driver_for(c.name, c.table).deploy_devnet(keys_dir, committee, feeds)
                                         for c in chains))
    sources: dict[str, list[dict]] = {}
    feed_push: dict[str, Any] = {}
    for deployment in deployments:
        for feed_id, tables in deployment.feed_sources.items():
            sources.setdefault(feed_id, []).extend(tables)
        feed_push.update(deployment.feed_push)
    config = TesseraConfig(
        chains={c.name: d.chain for c, d in zip(chains, deployments)},
        committee=CommitteeRef(
            file=Path("keys/committee/committee.toml"),
            share=Path("keys/committee/share-{index}.json"),
            key_file=Path("keys/committee.key"),
        ),
        relayer=RelayerSection(listen=f"{options.host}:{options.relayer_port}"),
        feeds=localnet_feeds(sources) if options.feeds else {},
        # Round leaders publish to the feed server; the pusher reads its stream.
        feed_server=FeedServerSection(listen=f"{options.host}:{options.feed_server_port}"),
        feed_round=FeedRoundSection(publish_urls=[f"http://{options.host}:{options.feed_server_port}/v1/reports"]),
        feed_push=FeedPushSection(targets=[c.name for c in chains], source=f"http://{options.host}:{options.feed_server_port}",
                                  listen=f"{options.host}:{options.feed_push_port}",
                                  **feed_push),
    )
    config = config.model_copy(update={"worker": await localnet_worker_section(state_dir, config)})
    # The localnet's keys are throwaway dev keys: its config opts in to unencrypted keys (KeyRef.allow_raw).
    dump_config(allow_raw_keys(config), state_dir / CONFIG_FILE)
    return {
        "chains": {c.name: d.deployed for c, d in zip(chains, deployments)},
        "committee": {"epoch": committee.epoch, "n": committee.n, "t": committee.t,
                      "group_key": "0x" + committee.group_key.hex()},
    }


async def provision_localnet_worker(state_dir: Path, config: TesseraConfig, chain_name: str, name: str = "") -> dict:
    """Keys and payout addresses for a worker on a localnet, written under `state_dir/keys` if
    missing: the worker identity, and on every chain the account its driver provisions (funded where
    the worker submits). Returns the `[worker]` fields to set."""
    keys = Path(state_dir) / "keys"
    suffix = f"-{name}" if name else ""
    identity = keys / f"worker-{chain_name}{suffix}.key"
    if not identity.exists():
        generate_identity(identity)
    fields: dict = {"key_file": str(identity), "payout": {}}
    for chain_key, chain in config.chains.items():
        address, accounts = await driver_for(chain_key, chain).provision_devnet_worker(
            keys, suffix, serves=chain_key == chain_name)
        fields["payout"][chain_key] = address
        fields.update({k: v.model_copy(update={"allow_raw": True}) for k, v in accounts.items()})  # dev keys
    return fields


async def localnet_worker_section(state_dir: Path, config: TesseraConfig) -> WorkerSection:
    """The generated config's [worker]: one config serves `relay worker --chain NAME` for every chain
    (identity keys/worker-{chain}.key, store worker-{chain}.db), with the submitting account funded
    on every chain and payout addresses on all of them. Paths are relative to the config file."""
    fields: dict = {}
    for name in config.chains:
        fields = await provision_localnet_worker(state_dir, config, name)
    state_dir = Path(state_dir).resolve()

    def relative(ref: KeyRef) -> KeyRef:
        assert ref.file is not None
        return ref.model_copy(update={"file": Path(os.path.relpath(Path(ref.file).resolve(), state_dir))})

    accounts = {k: relative(v) for k, v in fields.items() if isinstance(v, KeyRef)}
    return WorkerSection(key_file="keys/worker-{chain}.key", db="worker-{chain}.db", payout=fields["payout"], **accounts)


async def smoke(state_dir: Path) -> list[tuple[str, str]]:
    """Exercise what `up` deployed on every chain (each driver's smoke_devnet) with a t-of-n committee
    signature combined here; returns (check, outcome) rows. Raises on the first failure."""
    config = load_config(state_dir / CONFIG_FILE)
    committee = Committee.load(config.committee.file)
    secret = read_key_file(config.committee.key_file)
    shares = [load_share_for(committee, config.committee.share_path(i), secret) for i in range(1, committee.t + 1)]
    combine_ms: list[float] = []

    def sign(envelope: Envelope) -> tuple[int, bytes]:
        digest = envelope.digest(committee.epoch)
        started = time.perf_counter()
        result = attest.combine(committee, digest, [attest.partial_sign(share, digest) for share in shares])
        if not result.ok or not committee.verify(digest, result.signature):
            raise LocalnetError(f"combining partial signatures failed: {result.reason}")
        combine_ms.append((time.perf_counter() - started) * 1000)
        return committee.epoch, result.signature

    rows: list[tuple[str, str]] = []
    for name, chain in config.chains.items():
        for check, outcome in await driver_for(name, chain).smoke_devnet(state_dir / "keys", sign):
            if check == "committee signature":
                check = f"{committee.t}-of-{committee.n} BLS signature"
                outcome = f"combined in {combine_ms[-1]:.1f} ms, {outcome}"
            rows.append((f"{name}: {check}", outcome))
            log.info("smoke", chain=name, check=check, outcome=outcome)
    return rows


# The daemons' state written for the chains of one localnet run (relayer stores, signing logs,
# worker stores, with their WAL files): every `up` starts new chains, so it starts these fresh too
# (kept, a daemon would refuse them: relay/chainstate.py).
CHAIN_STATE_FILES = ("relayer*.db*", "attester-*.db*", "worker-*.db*")


def clear_chain_state(state_dir: Path) -> list[Path]:
    removed = [p for pattern in CHAIN_STATE_FILES for p in state_dir.glob(pattern) if p.is_file()]
    for path in removed:
        path.unlink()
    return removed


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
        self.status = "starting"
        self._owns_state = False  # set once we have checked that no other localnet uses state_dir

    def _save_state(self, status: str | None = None) -> None:
        self.status = status or self.status
        self.state.update(
            status=self.status,
            supervisor_pid=os.getpid(),
            processes={c.name: c.describe() for c in self.children if c.process is not None},
            updated_at=time.time(),
        )
        write_json_atomic(self.state_dir / STATE_FILE, self.state)

    async def start(self, ready: bool = True) -> None:
        """Start the chains and deploy. `ready=False` leaves the state at "starting" (what
        `start_detached` waits for) for a caller that starts more processes first, then calls
        `mark_ready()`."""
        existing = read_state(self.state_dir)
        if _supervisor_running(existing):
            raise LocalnetError(
                f"a localnet is already running from {self.state_dir} (pid {existing['supervisor_pid']}): "
                "`relay localnet status` shows it, `relay localnet down` stops it"
            )
        chains = plan(self.options)
        check_ports(self.options)
        self._owns_state = True
        o = self.options
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        if cleared := clear_chain_state(self.state_dir):
            log.info("daemon state of the previous chains cleared", files=[p.name for p in cleared])
        nodes: list[DevnetNode] = [driver_for(c.name, c.table).devnet_node(c.node) for c in chains]
        self.state = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o).items()},
            "chains": {c.name: {"kind": c.table.kind, "domain": c.table.domain, "process": c.process,
                                "rpc_url": node.rpc_url, "ws_url": (c.table.ws_urls or ["-"])[0],
                                "status_method": node.status_method}
                       for c, node in zip(chains, nodes)},
            "started_at": time.time(),
        }
        self._save_state("starting")
        children = [self._spawn(c.process, node.argv) for c, node in zip(chains, nodes)]
        self._save_state("starting")
        await asyncio.gather(*(child.wait_ready(lambda node=node: json_rpc_call(node.rpc_url, node.ready_method))
                               for child, node in zip(children, nodes)))
        log.info("chains up", **{c.name: node.rpc_url for c, node in zip(chains, nodes)})

        self.state["deployment"] = await deploy_all(o, self.state_dir, chains)
        if ready:
            self.mark_ready()

    def mark_ready(self) -> None:
        self._save_state("ready")
        log.info("localnet ready", state_dir=str(self.state_dir), config=str(self.state_dir / CONFIG_FILE))

    def _spawn(self, name: str, argv: list[str]) -> ChildProcess:
        return self.spawn(name, argv)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              health_url: str | None = None) -> ChildProcess:
        """Start a child supervised with the chains: recorded in localnet.json (so `status` probes it
        and `down` stops it), watched, and stopped with them. A child of the same name (a restart)
        replaces the old one."""
        child = ChildProcess(name=name, argv=argv, log_path=self.state_dir / "logs" / f"{name}.log", env=env,
                             health_url=health_url)
        child.start()
        self.children = [c for c in self.children if c.name != name] + [child]
        if self.state:
            self._save_state()
        return child

    async def watch(self, stop: asyncio.Event) -> None:
        """Wait for a stop request; a child dying on its own is an error worth stopping for."""
        while not stop.is_set():
            for child in self.children:
                if not child.alive():
                    log.error("process exited", name=child.name, code=child.process.returncode, log=str(child.log_path))
                    stop.set()
                    raise LocalnetError(f"{child.name} exited unexpectedly; last lines:\n{child.log_tail()}")
            await wait_event(stop, 0.5)

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


def start_detached(options: LocalnetOptions, argv: list[str], timeout: float = 120.0, what: str = "the localnet") -> dict:
    """Run `relay ARGV` (`localnet up` or `up`, without --detach) as a session leader and wait until it
    is ready."""
    state_dir = options.state_dir.resolve()
    existing = read_state(state_dir)
    if _supervisor_running(existing):
        raise LocalnetError(
            f"a localnet is already running from {state_dir} (pid {existing['supervisor_pid']}): "
            "`relay localnet down` stops it"
        )
    # Check ports here too, so the error reaches the user's terminal directly.
    check_ports(options)
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
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
            raise LocalnetError(f"{what} failed to start (exit {proc.returncode}); {log_path}:\n{tail}")
        state = read_state(state_dir)
        if state and state.get("status") == "ready" and state.get("supervisor_pid") == proc.pid:
            return state
        time.sleep(0.2)
    terminate_pid(proc.pid, 30)
    raise LocalnetError(f"{what} did not become ready within {timeout:.0f}s; see {log_path}")


def stop_detached(state_dir: Path, timeout: float = 30.0) -> bool:
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
    probes = {chain["process"]: (chain["rpc_url"], chain["status_method"]) for chain in state.get("chains", {}).values()}
    for name, proc in state.get("processes", {}).items():
        alive = pid_alive(proc["pid"])
        url, method = probes.get(name, (proc.get("health_url") or "-", None))
        health = "-"
        if alive and method:
            try:
                result = await json_rpc_call(url, method)
                health = f"ok ({method}={int(result, 16) if isinstance(result, str) else result})"
            except Exception as exc:
                health = f"unreachable: {exc}"
                all_ok = False
        elif alive and proc.get("health_url"):
            health = await http_health(proc["health_url"])
            all_ok = all_ok and health == "ok"
        all_ok = all_ok and alive
        rows.append((name, str(proc["pid"]), "alive" if alive else "dead", url, health))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)
    return all_ok, f"localnet at {state_dir} ({state.get('status')})\n{table}\nconfig: {state_dir / CONFIG_FILE}"


def summary(state: dict, state_dir: Path) -> str:
    deployed = state.get("deployment", {}).get("chains", {})
    width = max((len(name) for name in state.get("chains", {})), default=6) + 2
    lines = []
    for name, chain in state.get("chains", {}).items():
        lines.append(f"{name:<{width}}{chain['kind']:<7} {chain['rpc_url']}  ws {chain['ws_url']}  domain {chain['domain']}")
        for what, address in deployed.get(name, {}).items():
            lines.append(f"  {what:<24} {address}")
    lines.append(f"config  {state_dir / CONFIG_FILE}")
    return "\n".join(lines)
