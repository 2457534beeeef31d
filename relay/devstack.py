"""The whole stack on real processes, built on the localnet (relay/localnet.py: the chains, the
supervisor, localnet.json): n attesters, relayers, workers, the feed server, the pusher and the
market, each started exactly as an operator would (`relay attester`, `relay run`, `relay worker`,
...) as a child of the localnet, so `relay localnet status` probes it and `relay localnet down`
stops it.

Used by `relay up` (`run_up`: the default ports and the generated config, one worker per chain,
a live status table), `relay demo`, the end-to-end tests and bench/ (`messaging_stack`: free ports,
one config per extra relayer or worker).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from adapters.registry import driver_for
from attest.committee import Committee
from relay.config import FeedServerSection, WorkerSection, allow_raw_keys, dump_config, load_config
from relay.errors import LocalnetError
from relay.localnet import CONFIG_FILE, Localnet, LocalnetOptions, provision_localnet_worker, read_state, summary
from relay.log import get_logger
from relay.ports import free_port, free_port_block
from relay.processes import ChildProcess, json_rpc_call, pid_alive
from relay.store import Stage, Store

__all__ = ["Stack", "messaging_stack", "provision_localnet_worker", "run_up", "stack_status"]

log = get_logger("stack")


async def wait_http(url: str, proc: ChildProcess, timeout: float = 30.0) -> None:
    async def probe() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            async with session.get(url) as resp:
                resp.raise_for_status()

    await proc.wait_ready(probe, timeout)


@dataclass
class Stack:
    net: Localnet
    config_path: Path
    attesters: dict[int, ChildProcess] = field(default_factory=dict)
    relayers: dict[str, ChildProcess] = field(default_factory=dict)
    workers: dict[str, ChildProcess] = field(default_factory=dict)
    feed_servers: dict[str, ChildProcess] = field(default_factory=dict)
    log_level: str | None = None  # the children's; default: TESSERA_LOG_LEVEL, else info

    @property
    def state_dir(self) -> Path:
        return self.net.state_dir

    def _env(self) -> dict[str, str]:
        level = self.log_level or os.environ.get("TESSERA_LOG_LEVEL", "info")
        return {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": level}

    async def start_attester(self, index: int) -> ChildProcess:
        config = load_config(self.config_path)
        endpoint = Committee.load(config.committee.file).member(index).endpoint
        proc = self._spawn(f"attester-{index}", ["attester", "--index", str(index), "--config", str(self.config_path)],
                           health_url=f"{endpoint}/health")
        self.attesters[index] = proc
        await wait_http(f"{endpoint}/health", proc)
        return proc

    def _spawn(self, name: str, args: list[str], health_url: str | None = None) -> ChildProcess:
        """`relay ARGS` as a child of the localnet (recorded in its state, stopped with it)."""
        return self.net.spawn(name, [sys.executable, "-m", "relay.cli", *args], env=self._env(), health_url=health_url)

    async def relayer_config(self, name: str, **relayer: object) -> Path:
        """A copy of the config for relayer `name` with its own store, port and keys, so several
        relayers can run; `relayer` overrides [relayer] fields (replicas: the same PostgreSQL `db`,
        their own `replica` name, `lease_s`). Each gets its own funded account on every chain, made
        by the chain's driver: relayers sharing an account would fight over its nonces (EVM) and mix
        up their balances (docs/DEPLOY.md, "Relayer replicas")."""
        if name == "main":
            return self.config_path
        config = load_config(self.config_path)
        section = config.relayer.model_copy(update={"db": str(self.state_dir / f"relayer-{name}.db"),
                                                    "listen": f"127.0.0.1:{free_port()}", **relayer})
        keys = self.state_dir / "keys"
        chains = {chain_name: chain.model_copy(update=await driver_for(chain_name, chain).provision_devnet_relayer(keys, name))
                  for chain_name, chain in config.chains.items()}
        path = self.state_dir / f"config-{name}.toml"
        dump_config(allow_raw_keys(config.model_copy(update={"relayer": section, "chains": chains})), path)  # dev keys
        return path

    async def start_relayer(self, name: str = "main", **relayer: object) -> ChildProcess:
        """`relay run` as a child process. A new `name` gets its own config (see relayer_config, with
        the `relayer` overrides); a restarted relayer reuses it, and so its store and keys."""
        path = self.state_dir / f"config-{name}.toml"
        path = self.config_path if name == "main" else path if path.exists() else await self.relayer_config(name, **relayer)
        listen = load_config(path).relayer.listen
        proc = self._spawn(f"relayer-{name}", ["run", "--config", str(path)], health_url=f"http://{listen}/health")
        self.relayers[name] = proc
        await wait_http(f"http://{listen}/health", proc)
        return proc

    async def worker_config(self, chain: str, executor_options: dict | None = None, name: str = "",
                            **worker: object) -> Path:
        """A copy of the config with a [worker] section for `chain` (keys, accounts and payouts made
        if missing); `worker` overrides WorkerSection fields, `executor_options` sets [executors]."""
        config = load_config(self.config_path)
        fields = await provision_localnet_worker(self.state_dir, config, chain, name)
        label = f"{chain}-{name}" if name else chain
        listen = f"127.0.0.1:{free_port()}"
        fields.update(db=str(self.state_dir / f"worker-{label}.db"), listen=listen, output_url=f"http://{listen}")
        fields.update(worker)
        update: dict = {"worker": WorkerSection(**fields)}
        if executor_options is not None:
            update["executors"] = executor_options
        path = self.state_dir / f"config-worker-{label}.toml"
        dump_config(config.model_copy(update=update), path)
        return path

    async def start_worker(self, chain: str, executor_options: dict | None = None, name: str = "",
                           **worker: object) -> ChildProcess:
        """`relay worker --chain CHAIN` as a child process. The options are used when its config is
        first written (see worker_config); a restart reuses that config, and so its store. A `name`
        starts another worker for the same chain, with its own keys, accounts and store."""
        label = f"{chain}-{name}" if name else chain
        path = self.state_dir / f"config-worker-{label}.toml"
        if not path.exists():
            await self.worker_config(chain, executor_options, name, **worker)
        listen = load_config(path).worker.listen
        proc = self._spawn(f"worker-{label}", ["worker", "--config", str(path), "--chain", chain],
                           health_url=f"http://{listen}/health")
        self.workers[label] = proc
        await wait_http(f"http://{listen}/health", proc)
        return proc

    async def start_config_worker(self, chain: str) -> ChildProcess:
        """`relay worker --chain CHAIN` with the generated config's own [worker] (what `relay up` runs,
        one per chain; no HTTP server, so ready once it logs "worker running")."""
        proc = self._spawn(f"worker-{chain}", ["worker", "--chain", chain, "--config", str(self.config_path)])
        self.workers[chain] = proc
        await proc.wait_logged("worker running", 60)
        return proc

    def feed_server_config(self, name: str = "main", **settings: object) -> Path:
        """A copy of the config whose [feed_server] listens on a free port with its own history db;
        `settings` override FeedServerSection fields. Written once: a restart keeps port and history."""
        path = self.state_dir / f"config-feed-server-{name}.toml"
        if not path.exists():
            config = load_config(self.config_path)
            # The main server listens where the config's round leaders publish (localnet configs).
            listen = (config.feed_server.listen if name == "main" and config.feed_round.publish_urls
                      else f"127.0.0.1:{free_port()}")
            fields = {"listen": listen, "db": self.state_dir / f"feed-server-{name}.db", **settings}
            dump_config(config.model_copy(update={"feed_server": FeedServerSection(**fields)}), path)
        return path

    def feed_server_url(self, name: str = "main") -> str:
        return f"http://{load_config(self.feed_server_config(name)).feed_server.listen}"

    async def start_feed_server(self, name: str = "main", **settings: object) -> ChildProcess:
        """`relay feed-server` as a child process (see feed_server_config); its URL: feed_server_url(name)."""
        path = self.feed_server_config(name, **settings)
        proc = self._spawn(f"feed-server-{name}", ["feed-server", "--config", str(path)],
                           health_url=f"{self.feed_server_url(name)}/health")
        self.feed_servers[name] = proc
        await wait_http(f"{self.feed_server_url(name)}/health", proc)
        return proc

    def start_feed_pusher(self) -> ChildProcess:
        """`relay feed-push` as a child process: follows the config's feed server, pushes on-chain."""
        proc = self._spawn("feed-pusher", ["feed-push", "--config", str(self.config_path)])
        self.feed_servers["pusher"] = proc
        return proc

    def start_market(self, interval_ms: int = 500) -> ChildProcess:
        """`relay market`: random-walk swaps on the localnet pool, so the evm_pool feed source moves."""
        proc = self._spawn("market", ["market", "--config", str(self.config_path), "--interval-ms", str(interval_ms)])
        self.feed_servers["market"] = proc
        return proc

    def stop_all(self) -> None:
        for proc in [*self.feed_servers.values(), *self.workers.values(), *self.relayers.values(), *self.attesters.values()]:
            proc.stop()


@asynccontextmanager
async def messaging_stack(tmp_path: Path, attesters=(1, 2, 3, 4), relayer: bool = True, n: int = 4, t: int = 3,
                          slot_ms: int = 100, finality_slots: int = 4, evm_block_time: float = 0.25,
                          feeds: bool = False, evm_chains: int = 1):
    """The localnet plus attester and relayer processes on free ports. `feeds=True` keeps the
    localnet's [feeds] so attesters run feed rounds (off by default: tests of messaging and tasks
    should not pay for them on 2 cores). `evm_chains=2` adds a second anvil ("evm2", chain id and
    domain 31338) with the same contracts: three chains behind one committee and one relayer."""
    options = LocalnetOptions(
        state_dir=tmp_path / "net", evm_port=free_port(), evm_chains=evm_chains,
        evm_extra_ports=[free_port() for _ in range(evm_chains - 1)],
        solana_rpc_port=free_port(), solana_ws_port=free_port(),
        slot_ms=slot_ms, finality_slots=finality_slots, evm_block_time=evm_block_time, committee_n=n, committee_t=t,
        attester_base_port=free_port_block(n), relayer_port=free_port(), feed_server_port=free_port(), feed_push_port=free_port(),
        feeds=feeds,
    )
    net = Localnet(options)
    stack = Stack(net=net, config_path=net.state_dir / CONFIG_FILE)
    try:
        await net.start()
        await asyncio.gather(*(stack.start_attester(i) for i in attesters))
        if relayer:
            await stack.start_relayer()
        yield stack
    finally:
        stack.stop_all()
        net.stop()



# --- `relay up`: the localnet plus every daemon, supervised by one process ----------------------------


async def start_services(stack: Stack, market_interval_ms: int = 1000) -> None:
    """What `relay up` starts on a started localnet, with its generated config: every committee
    member's attester, the relayer, the feed server, one worker per chain, the pusher and the market.
    A process that fails to start raises LocalnetError naming it, with the tail of its log."""
    config = load_config(stack.config_path)
    committee = Committee.load(config.committee.file)
    await asyncio.gather(*(stack.start_attester(m.index) for m in committee.members))
    await stack.start_relayer()
    await stack.start_feed_server()
    for chain in config.chains:  # one at a time: each loads web3/solana, and the machine may be small
        await stack.start_config_worker(chain)
    pusher = stack.start_feed_pusher()
    market = stack.start_market(market_interval_ms) if any("MarketPool" in getattr(c, "contracts", {})
                                                           for c in config.chains.values()) else None
    await pusher.wait_logged("feed pusher running", 60)
    if market is not None:
        await market.wait_logged("market running", 60)


async def run_up(options: LocalnetOptions, market_interval_ms: int = 1000, refresh_s: float = 1.0) -> None:
    """`relay up` in the foreground (also what `relay up --detach` runs in the background): start the
    localnet and every daemon, show a live status table until SIGINT/SIGTERM or a process dies, then
    stop everything in reverse order."""
    net = Localnet(options)
    # Info at least: readiness of the daemons without an HTTP server is their "<name> running" line.
    stack = Stack(net=net, config_path=net.state_dir / CONFIG_FILE, log_level="info")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tty = sys.stdout.isatty()
    try:
        starting = asyncio.ensure_future(_start(net, stack, market_interval_ms))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():  # stopped while starting
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        starting.result()
        print(summary(read_state(net.state_dir) or {}, net.state_dir), flush=True)
        print("stack running; Ctrl-C stops everything (`relay down` from another terminal)", flush=True)
        watcher = asyncio.ensure_future(net.watch(stop))
        shown = ""
        last_line = 0.0
        while not watcher.done():
            table = await stack_status(net.state_dir)
            if tty:
                if shown:
                    print(f"\x1b[{shown.count(chr(10)) + 1}F\x1b[J", end="")
                print(table, flush=True)
                shown = table
            elif time.monotonic() - last_line >= 10 * refresh_s:  # a log line now and then, not a table
                log.info("stack status", **(await stack_summary(net.state_dir)))
                last_line = time.monotonic()
            await asyncio.wait({watcher}, timeout=refresh_s)
        watcher.result()
    finally:
        net.stop()


async def _start(net: Localnet, stack: Stack, market_interval_ms: int) -> None:
    await net.start(ready=False)
    try:
        await start_services(stack, market_interval_ms)
    except LocalnetError as exc:
        raise LocalnetError(f"relay up: {exc}") from None
    net.mark_ready()


async def _queue(config_path: Path) -> dict[str, int]:
    db = load_config(config_path).relayer.db
    if db is None or not Path(db).exists():
        return {}
    store = await Store.open(db)
    try:
        totals: dict[str, int] = {}
        for (stage, _), n in (await store.counts()).items():
            totals[stage.value] = totals.get(stage.value, 0) + n
        return {s.value: totals.get(s.value, 0) for s in Stage}
    finally:
        await store.close()


async def _feeds(config_path: Path) -> list[dict]:
    url = f"http://{load_config(config_path).feed_server.listen}/v1/feeds"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            async with session.get(url) as resp:
                return (await resp.json())["feeds"]
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError):
        return []


async def _heights(state: dict) -> dict[str, str]:
    async def height(chain: dict) -> str:
        try:
            result = await json_rpc_call(chain["rpc_url"], chain["status_method"], timeout=1.0)
            return str(int(result, 16) if isinstance(result, str) else result)
        except Exception:
            return "unreachable"

    chains = state.get("chains", {})
    return dict(zip(chains, await asyncio.gather(*(height(c) for c in chains.values()))))


async def stack_summary(state_dir: Path) -> dict:
    """The status table's content as data (the log line `relay up` writes when not on a terminal)."""
    state = read_state(state_dir) or {}
    processes = state.get("processes", {})
    alive = [name for name, p in processes.items() if pid_alive(p["pid"])]
    config_path = state_dir / CONFIG_FILE
    return {
        "processes": f"{len(alive)}/{len(processes)} alive",
        "dead": sorted(set(processes) - set(alive)),
        "heights": await _heights(state),
        "queue": await _queue(config_path) if config_path.exists() else {},
        "feeds": {f["id"]: f"round {f['latest_round']} {f['status']} {(f['age_ms'] or 0) / 1000:.1f}s"
                  for f in (await _feeds(config_path) if config_path.exists() else [])},
    }


async def stack_status(state_dir: Path) -> str:
    """The live table `relay up` shows: processes, chains and their heights, the relayer's queue by
    stage, feeds and their age."""
    state = read_state(state_dir) or {}
    config_path = state_dir / CONFIG_FILE
    heights, queue, feeds = await asyncio.gather(
        _heights(state), _queue(config_path), _feeds(config_path))
    lines = [f"tessera stack at {state_dir} ({state.get('status', 'stopped')})  {time.strftime('%H:%M:%S')}", ""]
    procs = state.get("processes", {})
    width = max((len(n) for n in procs), default=8) + 2
    lines.append(f"{'process':<{width}}{'pid':>8}  state")
    for name, proc in procs.items():
        lines.append(f"{name:<{width}}{proc['pid']:>8}  {'alive' if pid_alive(proc['pid']) else 'DEAD'}")
    lines += ["", f"{'chain':<{width}}height"]
    lines += [f"{name:<{width}}{h}" for name, h in heights.items()]
    lines += ["", "queue   " + ("  ".join(f"{stage}={n}" for stage, n in queue.items()) or "(no relayer store yet)")]
    lines += ["", f"{'feed':<{width}}{'round':>8}  {'status':<8} age"]
    for f in feeds:
        age = "-" if f.get("age_ms") is None else f"{f['age_ms'] / 1000:.1f}s"
        lines.append(f"{f['id']:<{width}}{str(f['latest_round']):>8}  {f['status']:<8} {age}")
    if not feeds:
        lines.append("(feed server not answering)")
    return "\n".join(lines)
