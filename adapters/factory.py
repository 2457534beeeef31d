"""Build chain adapters from the validated config (the only place that maps `kind` to a class)."""

from __future__ import annotations

from relay.chains import ChainAdapter
from relay.config import EvmChain, SolanaChain, TesseraConfig
from relay.errors import ConfigError


def _evm_key(chain: EvmChain, name: str) -> str | None:
    if chain.signer is None:
        return None
    key = chain.signer.read_text()
    key = key if key.startswith("0x") else "0x" + key
    if len(key) != 66:
        raise ConfigError(f"chains.{name}.signer ({chain.signer.describe()}) must hold a 32-byte hex private key")
    return key


def build_adapter(name: str, chain: EvmChain | SolanaChain, with_signer: bool = True) -> ChainAdapter:
    if isinstance(chain, EvmChain):
        from adapters.evm import EvmAdapter

        return EvmAdapter(name, chain, _evm_key(chain, name) if with_signer else None)
    from adapters.solana import SolanaAdapter, load_keypair

    signer = load_keypair(chain.signer.read_text(), chain.signer.describe()) if with_signer and chain.signer else None
    return SolanaAdapter(name, chain, signer)


def build_adapters(config: TesseraConfig, with_signers: bool = True) -> dict[int, ChainAdapter]:
    return {chain.domain: build_adapter(name, chain, with_signers) for name, chain in config.chains.items()}
