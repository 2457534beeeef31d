"""The one place in Tessera that asks which kind a chain is.

`driver_for(name, chain)` maps a validated `[chains.<name>]` table to its chain package's driver
(`relay.interfaces.ChainDriver`): every builder — messaging adapter, task boards, feed targets,
address parsing, deployment, devnet — is reached through it. The match is exhaustive: a chain kind
added to the config model without a driver here fails type checking (`assert_never`) and, at run
time, with a clear error instead of falling into another kind's code.

The chain packages are imported inside the match on purpose: a worker serving one chain must not
load the other chains' client libraries (web3 or solana-py and solders).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, assert_never

from relay.config import Chain, EvmChain, SolanaChain, TesseraConfig
from relay.deployment import DeployReport, DeployRequest
from relay.errors import ConfigError
from relay.feeds.config import EvmPoolSourceConfig
from relay.feeds.sources import SourceError, register_source
from relay.interfaces import ChainAdapter, ChainDriver


def driver_for(name: str, chain: Chain) -> ChainDriver:
    """The driver of chain `name` (its `[chains.<name>]` table)."""
    match chain:
        case EvmChain():
            from adapters.evm.driver import EvmDriver

            return EvmDriver(name, chain)
        case SolanaChain():
            from adapters.solana.driver import SolanaDriver

            return SolanaDriver(name, chain)
        case _:
            assert_never(chain)
            raise ConfigError(f"chains.{name}: no driver for chain kind {getattr(chain, 'kind', chain)!r}")


async def deploy_chain(name: str, chain: Chain, request: DeployRequest) -> DeployReport:
    """`relay deploy` on chain `name`: what is missing of Tessera's on-chain code deployed and
    initialised by the chain package's deployment module (adapters/<kind>/deployment.py)."""
    match chain:
        case EvmChain():
            from adapters.evm.deployment import deploy_tessera as deploy_evm

            return await deploy_evm(name, chain, request)
        case SolanaChain():
            from adapters.solana.deployment import deploy_tessera as deploy_solana

            return await deploy_solana(name, chain, request)
        case _:
            assert_never(chain)
            raise ConfigError(f"chains.{name}: no deployment for chain kind {getattr(chain, 'kind', chain)!r}")


def encrypt_hot_key(kind: str, key_text: str, password: str, where: str = "the key") -> tuple[dict, str]:
    """An unencrypted hot key of a chain kind ("evm": 0x-hex; "solana": solana-keygen JSON or base58)
    as a V3 keystore, with the account it is (EVM address, Solana public key): what `relay keys
    import` writes and `KeyRef(keystore=...)` reads back."""
    match kind:
        case "evm":
            from adapters.evm.gateway import evm_keystore

            return evm_keystore(key_text, password, where)
        case "solana":
            from adapters.solana.rpc import solana_keystore

            return solana_keystore(key_text, password, where)
        case _:
            raise ConfigError(f"no chain kind {kind!r}: use evm or solana")


def driver_named(config: TesseraConfig, name: str) -> ChainDriver:
    """The driver of a chain by its name, with a clear error for a name not under [chains]."""
    chain = config.chains.get(name)
    if chain is None:
        raise ConfigError(f"no chain {name!r} under [chains]; configured: {', '.join(sorted(config.chains))}")
    return driver_for(name, chain)


def messaging_adapters(config: TesseraConfig, *, role: str = "relayer", with_signers: bool = True) -> dict[int, ChainAdapter]:
    """Every configured chain's gateway adapter, keyed by domain."""
    return {chain.domain: driver_for(name, chain).messaging(role=role, with_signer=with_signers)
            for name, chain in config.chains.items()}


def register_feed_sources(config: TesseraConfig | Mapping[str, Chain]) -> None:
    """Registers the source kinds that read a chain (`evm_pool`) for this config's chains: call it once
    at attester start, before building the feeds' sources. The chain a source names is resolved by
    its driver, which refuses a chain that has no such pool."""

    chains = config.chains if isinstance(config, TesseraConfig) else dict(config)

    def evm_pool(source: EvmPoolSourceConfig, name: str, clock: Callable[[], float] = time.time, **_: Any):
        chain = chains.get(source.chain)
        if chain is None:
            raise SourceError(f"source {name}: no chain {source.chain!r} under [chains]; configured: "
                              f"{', '.join(sorted(chains))}")
        return driver_for(source.chain, chain).pool_source(source, name, clock)

    register_source("evm_pool", evm_pool)


async def contract_owners(name: str, chain: Chain) -> dict[str, tuple[str, str, str | None]]:
    """`relay admin status`: each owned contract of chain `name` as (address, owner, pending owner or
    None). Solana: the program's admin (its committee config's: pause, fees; two-step like an EVM
    owner) and its upgrade authority (one step, never pending)."""
    match chain:
        case EvmChain():
            from adapters.evm.deployment import ownership

            return await ownership(name, chain)
        case SolanaChain():
            from adapters.solana.deployment import program_admin

            return await program_admin(name, chain)
        case _:
            assert_never(chain)
            raise ConfigError(f"chains.{name}: no owners for chain kind {getattr(chain, 'kind', chain)!r}")


async def accept_ownership(name: str, chain: Chain, contract: str, key: Any) -> tuple[str, str | None]:
    """`relay admin accept-ownership`: the pending owner (`key`, a KeyRef) takes over `contract`
    ("gateway" / "feed-store"; on Solana "gateway" is the program's admin, AcceptAdmin); returns
    (address, transaction hash or None if it already owned it)."""
    match chain:
        case EvmChain():
            from adapters.evm.deployment import accept_ownership as accept_evm

            return await accept_evm(name, chain, contract, key)
        case SolanaChain():
            if contract != "gateway":
                raise ConfigError(f"chains.{name} is a Solana chain: its program has one admin (gateway, fees and "
                                  "feeds alike): use --contract gateway")
            from adapters.solana.deployment import accept_admin

            return await accept_admin(name, chain, key)
        case _:
            assert_never(chain)
            raise ConfigError(f"chains.{name}: no ownership for chain kind {getattr(chain, 'kind', chain)!r}")
