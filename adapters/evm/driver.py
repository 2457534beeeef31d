"""The EVM chain driver: what `adapters.registry.driver_for` returns for `kind = "evm"`."""

from __future__ import annotations

from collections.abc import Mapping
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm import checks, devnet
from adapters.evm.devnet import ANVIL_DEV_KEYS
from adapters.evm.feeds import EvmFeedTarget, EvmPoolSource
from adapters.evm.market import MarketSimulator
from adapters.evm.rotation import EvmRotation
from adapters.evm.gateway import EvmAdapter, evm_key
from adapters.evm.taskboard import EvmTaskBoardV2
from attest.committee import Committee
from attest.files import write_atomic
from relay.config import FeedPushSection, EvmChain, KeyRef, TesseraConfig, WorkerSection
from relay.errors import ConfigError
from relay.feeds.config import EvmPoolSourceConfig
from relay.feeds.config import FeedConfig
from relay.interfaces import DevnetDeployment, DevnetNode, EnvelopeSigner

WORKER_EVM_KEY_INDEX = 5  # anvil dev account of the default localnet worker
WORKER_FUNDING_WEI = 100 * 10**18
RELAYER_FUNDING_WEI = 1_000 * 10**18


class EvmDriver:
    def __init__(self, name: str, chain: EvmChain) -> None:
        self.name = name
        self.chain = chain

    def messaging(self, *, role: str = "relayer", with_signer: bool = True, signer: Any = None) -> EvmAdapter:
        if signer is not None:  # the SDK's caller's own account, never one from the config
            return EvmAdapter(self.name, self.chain, self._account_key(signer))
        field = "sender" if role == "sender" and self.chain.sender is not None else "signer"
        ref = getattr(self.chain, field) if with_signer else None
        return EvmAdapter(self.name, self.chain, evm_key(ref, f"chains.{self.name}.{field}"))

    def requester_board_v2(self, config: TesseraConfig, signer: Any = None) -> EvmTaskBoardV2:
        if signer is not None:
            return EvmTaskBoardV2(self.name, self.chain, self._account_key(signer))
        return EvmTaskBoardV2.from_config(self.name, self.chain, role="requester")

    def _account_key(self, signer: Any) -> str:
        """The private key of a caller's eth_account LocalAccount (what the SDK passes as signer)."""
        if not isinstance(signer, LocalAccount):
            raise ConfigError(f"chain {self.name!r} is an EVM chain: its signer must be an eth_account LocalAccount "
                              f"(Account.from_key(...)), not {type(signer).__name__}")
        return "0x" + bytes(signer.key).hex()

    def serving_board_v2(self, config: TesseraConfig, worker: WorkerSection | None = None) -> EvmTaskBoardV2:
        if worker is None:
            return EvmTaskBoardV2.from_config(self.name, self.chain, role="reader")
        if worker.evm_key is None:
            raise ConfigError(f"the worker on EVM chain {self.name!r} needs its own account: set [worker] evm_key "
                              "(file = ... or env = ...), not the relayer's signer")
        return EvmTaskBoardV2.from_config(self.name, self.chain, role="worker", worker_key=worker.evm_key)

    def rotation(self) -> EvmRotation:
        """The chain's CommitteeVerifier for `relay committee rotate`, sending from the chain's signer."""
        return EvmRotation(self.name, self.chain, evm_key(self.chain.signer, f"chains.{self.name}.signer"))

    def feed_target(self, config: TesseraConfig, push: FeedPushSection) -> EvmFeedTarget:
        return EvmFeedTarget.from_config(self.name, self.chain, key=push.evm_key)

    def parse_address(self, text: str) -> bytes:
        return self.chain.parse_address(text)

    def pool_source(self, source: EvmPoolSourceConfig, name: str, clock: Callable[[], float] = time.time) -> EvmPoolSource:
        return EvmPoolSource(source, name, self.chain.rpc_urls[0], clock=clock)

    def market(self, key: str, **options: Any) -> MarketSimulator:
        pool = self.chain.contracts.get("MarketPool")
        if pool is None:
            raise ConfigError(f"chains.{self.name}.contracts has no MarketPool: `relay localnet up` deploys the market")
        return MarketSimulator.connect(self.chain.rpc_urls[0], key, pool, **options)

    async def provision_devnet_worker(self, keys_dir: Path, suffix: str, serves: bool) -> tuple[str, dict]:
        """A localnet worker's account on this chain: anvil dev key 5 for the default worker, a fresh
        funded account for a named extra one (two workers never share an account's nonces). Returns
        its payout address and the `[worker]` fields it needs."""
        key_file = keys_dir / f"evm-worker{suffix}.key"
        if not key_file.exists():
            write_atomic(key_file, (ANVIL_DEV_KEYS[WORKER_EVM_KEY_INDEX] if not suffix
                                    else "0x" + bytes(Account.create().key).hex()) + "\n")
        address = Account.from_key(key_file.read_text().strip()).address
        if suffix:
            w3 = AsyncWeb3(AsyncHTTPProvider(self.chain.rpc_urls[0]))
            try:  # anvil's own cheat: the localnet is the only place extra workers are provisioned
                await w3.provider.make_request("anvil_setBalance", [address, hex(WORKER_FUNDING_WEI)])
            finally:
                await w3.provider.disconnect()
        return address, {"evm_key": KeyRef(file=key_file)}

    async def provision_devnet_relayer(self, keys_dir: Path, name: str) -> dict[str, Any]:
        """A relayer replica's own account: a fresh key (never an anvil dev key another process may
        send from), its balance set on this anvil."""
        key_file = keys_dir / f"evm-relayer-{name}.key"
        if not key_file.exists():
            write_atomic(key_file, "0x" + bytes(Account.create().key).hex() + "\n")
        address = Account.from_key(key_file.read_text().strip()).address
        w3 = AsyncWeb3(AsyncHTTPProvider(self.chain.rpc_urls[0]))
        try:  # anvil's own cheat, as for extra workers
            await w3.provider.make_request("anvil_setBalance", [address, hex(RELAYER_FUNDING_WEI)])
        finally:
            await w3.provider.disconnect()
        return {"signer": KeyRef(file=key_file)}

    def devnet_node(self, settings: Mapping[str, Any]) -> DevnetNode:
        return devnet.devnet_node(self.chain, settings)

    async def deploy_devnet(self, keys_dir: Path, committee: Committee,
                            feeds: Mapping[str, FeedConfig]) -> DevnetDeployment:
        return await devnet.deploy_devnet(self.name, self.chain, keys_dir, committee, feeds)

    async def smoke_devnet(self, keys_dir: Path, sign: EnvelopeSigner) -> list[tuple[str, str]]:
        return await devnet.smoke_devnet(self.chain, sign)

    async def deployment_problems(self, committee: Committee | None) -> list[str]:
        return await checks.deployment_problems(self.name, self.chain, committee)
