"""The EVM side of a localnet: anvil (Foundry's EVM node) and what Tessera deploys on it.

- `AnvilProcess` / `running_anvil`: anvil as a managed child process (start, wait until it answers,
  stop), for tests and tools. The binary comes from npm (`@foundry-rs/anvil-linux-amd64`, installed
  by `make setup`). Every method has a synchronous form and an async one (`start`/`astart`,
  `stop`/`astop`); the async ones run the blocking parts in a thread so an event loop keeps serving
  while anvil boots.
- `devnet_node`, `deploy_devnet`, `smoke_devnet`: the steps of `relay localnet up` for an EVM chain
  (anvil's command line; the contracts, keys and funding; the smoke check), reached through
  `EvmDriver` by relay/localnet.py.
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
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError

from adapters.evm import deploy as evm_deploy
from adapters.evm.deploy import EvmDeployError
from adapters.evm.deployment import deploy_tessera
from adapters.evm.feeds import deploy_feeds
from adapters.evm.fees import configure_gateway_fees
from adapters.evm.gateway import deploy_recording_receiver
from adapters.evm.market import deploy_market
from attest.committee import Committee
from attest.files import write_atomic
from relay.config import EvmChain, KeyRef
from relay.deployment import DeployRequest
from relay.envelope import Envelope, address_to_bytes32, keccak256
from relay.feeds.config import FeedConfig
from relay.interfaces import DevnetDeployment, DevnetNode, EnvelopeSigner
from relay.log import get_logger
from relay.ports import free_port, port_is_free
from relay.protocol import MessageKind


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


def dev_private_keys(mnemonic: str = DEFAULT_MNEMONIC, count: int = DEFAULT_ACCOUNTS) -> list[str]:
    """The keys anvil funds at start: BIP-44 path m/44'/60'/0'/0/i of its mnemonic."""
    return list(_derive_keys(mnemonic, count))


@functools.lru_cache(maxsize=8)
def _derive_keys(mnemonic: str, count: int) -> tuple[str, ...]:
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


# --- the localnet: anvil's command line, deployment, smoke check -----------------------------------
# Reached through EvmDriver.devnet_node / deploy_devnet / smoke_devnet (relay/localnet.py drives them).

SMOKE_PAYLOAD = b"hello from the localnet"
PUSHER_FUNDING_WEI = 100 * 10**18
# Key files under the localnet's keys/ (the same anvil dev accounts on every EVM chain of the
# localnet: separate nodes, separate nonces).
DEV_KEY_FILES = {"evm-deployer.key": 0, "evm-relayer.key": 1, "evm-user.key": 3}  # 2: the market's


def anvil_argv(binary: Path, host: str, port: int, chain_id: int, block_time: float | None) -> list[str]:
    argv = [str(binary), "--host", host, "--port", str(port), "--chain-id", str(chain_id), "--silent"]
    if block_time:
        argv += ["--block-time", str(block_time)]
    return argv


def devnet_node(chain: EvmChain, settings: Mapping[str, Any]) -> DevnetNode:
    """anvil serving `chain` (host and port from its first rpc_url); settings: `block_time` (seconds,
    None mines a block per transaction)."""
    url = urlsplit(chain.rpc_urls[0])
    argv = anvil_argv(ANVIL_BIN, url.hostname or DEFAULT_HOST, url.port or DEFAULT_PORT, chain.chain_id,
                      settings.get("block_time"))
    return DevnetNode(argv=argv, rpc_url=chain.rpc_urls[0], ready_method="eth_chainId", status_method="eth_blockNumber")


def pool_source(chain_name: str, pool: str) -> dict:
    """A [feeds] source table reading ETH/USD from the localnet market's pool on `chain_name`."""
    return {"kind": "evm_pool", "name": f"{chain_name}-pool", "chain": chain_name, "pool": pool,
            "base_decimals": 18, "quote_decimals": 6}


def _load_or_create_pusher(keys_dir: Path) -> LocalAccount:
    # The pusher gets an account of its own so it never shares a nonce sequence with the relayer,
    # the SDK user or the market. Created once, exclusively: EVM chains deploy concurrently.
    path = keys_dir / "evm-feed-pusher.key"
    if not path.exists():
        try:
            write_atomic(path, "0x" + bytes(Account.create().key).hex() + "\n", exclusive=True)
        except FileExistsError:
            pass  # another chain's deployment made it first
    return Account.from_key(path.read_text().strip())


async def deploy_devnet_market(w3: AsyncWeb3, account: LocalAccount, keys_dir: Path) -> dict[str, str]:
    """The market the evm_pool source reads and the feed pusher's account (funded). Returns the
    deployed addresses."""
    write_atomic(keys_dir / "evm-market.key", ANVIL_DEV_KEYS[2] + "\n")  # `relay market` trades from dev account 2
    pusher = _load_or_create_pusher(keys_dir)
    # anvil's own cheat: the localnet is the only place accounts are funded out of thin air.
    await w3.provider.make_request("anvil_setBalance", [pusher.address, hex(PUSHER_FUNDING_WEI)])
    market = await deploy_market(w3, account, price="3456.5", base_liquidity="1000")
    return market.contracts()


async def deploy_devnet_feeds(w3: AsyncWeb3, account: LocalAccount, keys_dir: Path, verifier: str,
                              feeds: Mapping[str, FeedConfig]) -> dict[str, str]:
    """The market, the pusher's account, and the feed store with an aggregator per feed."""
    contracts = await deploy_devnet_market(w3, account, keys_dir)
    contracts.update(await deploy_feeds(w3, account, verifier, feeds))
    return contracts


async def deploy_devnet(name: str, chain: EvmChain, keys_dir: Path, committee: Committee,
                        feeds: Mapping[str, FeedConfig]) -> DevnetDeployment:
    """Everything Tessera needs on a fresh anvil (see ChainDriver.deploy_devnet)."""
    await asyncio.to_thread(evm_deploy.ensure_built)  # forge build when sources changed
    for file, index in DEV_KEY_FILES.items():
        write_atomic(keys_dir / file, ANVIL_DEV_KEYS[index] + "\n")
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_urls[0]))
    account = Account.from_key(ANVIL_DEV_KEYS[0])
    try:
        contracts = {"Probe": await evm_deploy.deploy(w3, account, "Probe")}
        # What `relay deploy` runs on any chain, by the same code: CommitteeVerifier, Gateway,
        # TaskBoardV2 (verdicts from the committee; a 300 s settlement grace here), FeedStore with an
        # aggregator per feed.
        report = await deploy_tessera(name, chain, DeployRequest(
            deployer=KeyRef(file=keys_dir / "evm-deployer.key", allow_raw=True), committee=committee, feeds=feeds,
            owner=None, upgrade_authority=None, recorded={}, keys_dir=keys_dir, record=lambda fields: None,
            task_settlement_grace_s=300))
        contracts.update(report.fields["contracts"])
        # A receiver that records what it is handed: the demo's and the tests' destination.
        contracts["RecordingReceiver"] = await deploy_recording_receiver(w3, account, contracts["Gateway"])
        # Task protocol v1 is retired (docs/TASKS.md "v1 retired"): no v1 TaskBoard is deployed.
        # Fees (docs/PROTOCOL.md "Fees"): the relayer's account is the beneficiary, prices come from the
        # FeedStore (ETH/USD); deploy_tessera already made TaskBoardV2 a flat-fee sender. No destination
        # costs are posted: with none, sends cost the flat fee (0 here) and need no fresh price.
        await configure_gateway_fees(w3, account, contracts["Gateway"],
                                     beneficiary=Account.from_key(ANVIL_DEV_KEYS[DEV_KEY_FILES["evm-relayer.key"]]).address,
                                     price_feeds=contracts.get("FeedStore"), native_price_feed="ETH/USD")
        contracts.update(await deploy_devnet_market(w3, account, keys_dir))
    finally:
        await w3.provider.disconnect()
    _log().info("evm contracts deployed", chain=name, **contracts)
    keys = Path(keys_dir.name)
    table = chain.model_copy(update={"contracts": contracts, "signer": KeyRef(file=keys / "evm-relayer.key"),
                                     "sender": KeyRef(file=keys / "evm-user.key")})
    return DevnetDeployment(
        chain=table, deployed=contracts,
        feed_sources={"ETH/USD": [pool_source(name, contracts["MarketPool"])]} if "ETH/USD" in feeds else {},
        feed_push={"evm_key": KeyRef(file=keys / "evm-feed-pusher.key")},
    )


async def smoke_devnet(chain: EvmChain, sign: EnvelopeSigner) -> list[tuple[str, str]]:
    """The Probe contract through web3.py, then a committee signature verified by the chain's
    CommitteeVerifier while a forged one is refused (see ChainDriver.smoke_devnet)."""
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_urls[0]))
    deployer = Account.from_key(ANVIL_DEV_KEYS[0])
    try:
        probe = evm_deploy.contract(w3, "Probe", chain.contracts["Probe"])
        receipt = await evm_deploy.transact(w3, deployer, probe.functions.set(42))
        value = await probe.functions.value().call()
        digest = await probe.functions.hash(b"tessera").call()
        if value != 42 or bytes(digest) != keccak256(b"tessera"):
            raise EvmDeployError(f"Probe returned value={value}, hash={bytes(digest).hex()}")
        rows = [("Probe.set(42) + hash()", f"ok (block {receipt['blockNumber']}, gas {receipt['gasUsed']:,})")]

        verifier_address = chain.contracts["CommitteeVerifier"]
        envelope = Envelope(kind=MessageKind.DATA, nonce=0, src_domain=0, src_sender=bytes(32), dst_domain=chain.domain,
                            dst_receiver=address_to_bytes32(verifier_address), payload=SMOKE_PAYLOAD)
        epoch, signature = sign(envelope)
        verifier = evm_deploy.contract(w3, "CommitteeVerifier", verifier_address)
        gas = (await evm_deploy.transact(w3, deployer, verifier.functions.verify(envelope.encode(), epoch, signature)))["gasUsed"]
        forged = bytes(signature[:-1]) + bytes([signature[-1] ^ 1])
        try:
            await verifier.functions.verify(envelope.encode(), epoch, forged).call()
        except ContractLogicError:
            pass
        else:
            raise EvmDeployError(f"the CommitteeVerifier on {chain.rpc_urls[0]} accepted a forged signature")
        rows.append(("committee signature", f"verified on-chain ({gas:,} gas); forged signature refused"))
        return rows
    finally:
        await w3.provider.disconnect()
