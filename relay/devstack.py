"""The whole messaging stack on real processes, used by `relay demo`, the end-to-end tests and
bench/e2e.py: a localnet (one or more anvils + the Solana localnet server, contracts and program
deployed), n attester processes and relayer processes, workers, feed server and pusher, each started
exactly as an operator would (`relay attester`, `relay run`, `relay worker`, ...)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from adapters.registry import driver_for
from attest.committee import Committee
from relay.config import FeedServerSection, KeyRef, TesseraConfig, WorkerSection, dump_config, load_config
from relay.localnet import CONFIG_FILE, Localnet, LocalnetOptions
from relay.processes import ChildProcess
from relay.tasks.worker import generate_identity


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(count: int) -> int:
    for _ in range(200):
        base = random.randint(20000, 60000 - count)
        ok = True
        for port in range(base, base + count):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of free ports")


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

    @property
    def state_dir(self) -> Path:
        return self.net.state_dir

    def _env(self) -> dict[str, str]:
        return {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": os.environ.get("TESSERA_LOG_LEVEL", "info")}

    async def start_attester(self, index: int) -> ChildProcess:
        config = load_config(self.config_path)
        endpoint = Committee.load(config.committee.file).member(index).endpoint
        proc = ChildProcess(f"attester-{index}",
                            [sys.executable, "-m", "relay.cli", "attester", "--index", str(index),
                             "--config", str(self.config_path)],
                            self.state_dir / "logs" / f"attester-{index}.log", env=self._env())
        proc.start()
        self.attesters[index] = proc
        await wait_http(f"{endpoint}/health", proc)
        return proc

    def relayer_config(self, name: str) -> Path:
        """A copy of the config with its own store and port, so several relayers can run."""
        if name == "main":
            return self.config_path
        # Imported here, not at the top: it loads web3, and the CLI imports this module (through
        # relay.demo) for every command, a worker or attester included.
        from adapters.evm.devnet import ANVIL_DEV_KEYS

        config = load_config(self.config_path)
        relayer = config.relayer.model_copy(update={"db": self.state_dir / f"relayer-{name}.db",
                                                    "listen": f"127.0.0.1:{free_port()}"})
        # Its own EVM account: two relayers sharing one account would fight over its nonces. Every
        # chain that signs with the localnet's EVM relayer key (each anvil) gets this one instead.
        key_file = self.state_dir / "keys" / f"evm-relayer-{name}.key"
        key_file.write_text(ANVIL_DEV_KEYS[4 + len(self.relayers) % 2] + "\n")
        shared = (self.state_dir / "keys" / "evm-relayer.key").resolve()
        chains = {chain_name: chain.model_copy(update={"signer": KeyRef(file=key_file)})
                  if chain.signer is not None and chain.signer.file is not None and chain.signer.file.resolve() == shared
                  else chain for chain_name, chain in config.chains.items()}
        path = self.state_dir / f"config-{name}.toml"
        dump_config(config.model_copy(update={"relayer": relayer, "chains": chains}), path)
        return path

    async def start_relayer(self, name: str = "main") -> ChildProcess:
        # A restarted relayer reuses its config (and so its store); a new name gets its own.
        path = self.state_dir / f"config-{name}.toml"
        path = self.config_path if name == "main" else path if path.exists() else self.relayer_config(name)
        listen = load_config(path).relayer.listen
        proc = ChildProcess(f"relayer-{name}", [sys.executable, "-m", "relay.cli", "run", "--config", str(path)],
                            self.state_dir / "logs" / f"relayer-{name}.log", env=self._env())
        proc.start()
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
        proc = ChildProcess(f"worker-{label}", [sys.executable, "-m", "relay.cli", "worker", "--config", str(path),
                                                "--chain", chain],
                            self.state_dir / "logs" / f"worker-{label}.log", env=self._env())
        proc.start()
        self.workers[label] = proc
        await wait_http(f"http://{listen}/health", proc)
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
        proc = ChildProcess(f"feed-server-{name}", [sys.executable, "-m", "relay.cli", "feed-server", "--config", str(path)],
                            self.state_dir / "logs" / f"feed-server-{name}.log", env=self._env())
        proc.start()
        self.feed_servers[name] = proc
        await wait_http(f"{self.feed_server_url(name)}/health", proc)
        return proc

    def start_feed_pusher(self) -> ChildProcess:
        """`relay feed-push` as a child process: follows the config's feed server, pushes on-chain."""
        proc = ChildProcess("feed-pusher", [sys.executable, "-m", "relay.cli", "feed-push", "--config",
                                            str(self.config_path)],
                            self.state_dir / "logs" / "feed-pusher.log", env=self._env())
        proc.start()
        self.feed_servers["pusher"] = proc
        return proc

    def start_market(self, interval_ms: int = 500) -> ChildProcess:
        """`relay market`: random-walk swaps on the localnet pool, so the evm_pool feed source moves."""
        proc = ChildProcess("market", [sys.executable, "-m", "relay.cli", "market", "--config", str(self.config_path),
                                       "--interval-ms", str(interval_ms)],
                            self.state_dir / "logs" / "market.log", env=self._env())
        proc.start()
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
        attester_base_port=free_port_block(n), relayer_port=free_port(), feed_server_port=free_port(), feeds=feeds,
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
        fields.update(accounts)
    return fields
