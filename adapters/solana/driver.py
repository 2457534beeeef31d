"""The Solana chain driver: what `adapters.registry.driver_for` returns for `kind = "solana"`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair

from adapters.solana import checks, devnet
from adapters.solana.devnet import load_or_create_keypair
from adapters.solana.feeds import SolanaFeedTarget
from adapters.solana.gateway import SolanaAdapter
from adapters.solana.rotation import SolanaRotation
from adapters.solana.rpc import keypair_from_ref
from adapters.solana.taskboard import SolanaTaskBoardV2
from attest.committee import Committee
from relay.config import FeedPushSection, KeyRef, SolanaChain, TesseraConfig, WorkerSection
from relay.errors import ConfigError
from relay.feeds.config import FeedConfig
from relay.interfaces import DevnetDeployment, DevnetNode, EnvelopeSigner

WORKER_SOLANA_LAMPORTS = 100 * 10**9
RELAYER_SOLANA_LAMPORTS = 100 * 10**9


class SolanaDriver:
    def __init__(self, name: str, chain: SolanaChain) -> None:
        self.name = name
        self.chain = chain

    def messaging(self, *, role: str = "relayer", with_signer: bool = True, signer: Any = None) -> SolanaAdapter:
        if signer is not None:  # the SDK's caller's own keypair, never one from the config
            return SolanaAdapter(self.name, self.chain, self._keypair(signer))
        field = "sender" if role == "sender" and self.chain.sender is not None else "signer"
        ref = getattr(self.chain, field) if with_signer else None
        where = f"chains.{self.name}.{field}"
        return SolanaAdapter(self.name, self.chain,
                             keypair_from_ref(ref, where) if ref else None)

    def requester_board_v2(self, config: TesseraConfig, signer: Any = None) -> SolanaTaskBoardV2:
        if signer is not None:
            return SolanaTaskBoardV2(self.name, self.chain, self._keypair(signer))
        return SolanaTaskBoardV2.from_config(self.name, self.chain, role="requester")

    def _keypair(self, signer: Any) -> Keypair:
        """A caller's solders Keypair (what the SDK passes as signer)."""
        if not isinstance(signer, Keypair):
            raise ConfigError(f"chain {self.name!r} is a Solana chain: its signer must be a solders Keypair "
                              f"(Keypair.from_json(...), Keypair.from_base58_string(...)), not {type(signer).__name__}")
        return signer

    def serving_board_v2(self, config: TesseraConfig, worker: WorkerSection | None = None) -> SolanaTaskBoardV2:
        if worker is None:
            return SolanaTaskBoardV2.from_config(self.name, self.chain, role="reader")
        if worker.solana_keypair is None:
            raise ConfigError(f"the worker on Solana chain {self.name!r} needs its own fee payer: set [worker] "
                              "solana_keypair (file = ... or env = ...)")
        return SolanaTaskBoardV2.from_config(self.name, self.chain, role="worker", keypair=worker.solana_keypair)

    def rotation(self) -> SolanaRotation:
        """The program's committee for `relay committee rotate`, paid by the chain's signer."""
        ref = self.chain.signer
        return SolanaRotation(self.name, self.chain, keypair_from_ref(ref, f"chains.{self.name}.signer") if ref else None)

    def feed_target(self, config: TesseraConfig, push: FeedPushSection) -> SolanaFeedTarget:
        return SolanaFeedTarget.from_config(self.name, self.chain, payer=push.solana_keypair)

    def parse_address(self, text: str) -> bytes:
        return self.chain.parse_address(text)

    def pool_source(self, source: Any, name: str, clock: Any = None) -> Any:
        raise ConfigError(f"source {name}: chains.{self.name} is a Solana chain; an evm_pool source reads a "
                          "Uniswap-v2-style pool on an EVM chain")

    def market(self, key: str, **options: Any) -> Any:
        raise ConfigError(f"chains.{self.name} is a Solana chain: the market simulator trades on the localnet's "
                          "EVM pool; pass --chain with an EVM chain")

    async def provision_devnet_worker(self, keys_dir: Path, suffix: str, serves: bool) -> tuple[str, dict]:
        """A localnet worker's fee payer on this chain (funded by airdrop when it serves here).
        Returns its payout address and the `[worker]` fields it needs."""
        key_file = keys_dir / f"solana-worker{suffix}.json"
        keypair = load_or_create_keypair(key_file)
        if serves:
            async with AsyncClient(self.chain.rpc_urls[0], commitment=Confirmed) as client:
                balance = (await client.get_balance(keypair.pubkey())).value
                if balance < WORKER_SOLANA_LAMPORTS // 2:
                    sig = (await client.request_airdrop(keypair.pubkey(), WORKER_SOLANA_LAMPORTS)).value
                    await client.confirm_transaction(sig, commitment=Confirmed)
        return str(keypair.pubkey()), {"solana_keypair": KeyRef(file=key_file)}

    async def provision_devnet_relayer(self, keys_dir: Path, name: str) -> dict[str, Any]:
        """A relayer replica's own fee payer, funded by airdrop (topped up when below half)."""
        key_file = keys_dir / f"solana-relayer-{name}.json"
        keypair = load_or_create_keypair(key_file)
        async with AsyncClient(self.chain.rpc_urls[0], commitment=Confirmed) as client:
            if (await client.get_balance(keypair.pubkey())).value < RELAYER_SOLANA_LAMPORTS // 2:
                sig = (await client.request_airdrop(keypair.pubkey(), RELAYER_SOLANA_LAMPORTS)).value
                await client.confirm_transaction(sig, commitment=Confirmed)
        return {"signer": KeyRef(file=key_file)}

    def devnet_node(self, settings: Mapping[str, Any]) -> DevnetNode:
        return devnet.devnet_node(self.chain, settings)

    async def deploy_devnet(self, keys_dir: Path, committee: Committee,
                            feeds: Mapping[str, FeedConfig]) -> DevnetDeployment:
        return await devnet.deploy_devnet(self.name, self.chain, keys_dir, committee, feeds)

    async def smoke_devnet(self, keys_dir: Path, sign: EnvelopeSigner) -> list[tuple[str, str]]:
        return await devnet.smoke_devnet(self.chain, keys_dir, sign)

    async def deployment_problems(self, committee: Committee | None) -> list[str]:
        return await checks.deployment_problems(self.name, self.chain, committee)
