"""Build chain adapters from the validated config (the only place that maps `kind` to a class)."""

from __future__ import annotations

from relay.chains import ChainAdapter
from relay.config import EvmChain, KeyRef, SolanaChain, TesseraConfig
from relay.errors import ConfigError


def _evm_key(ref: KeyRef | None, where: str) -> str | None:
    if ref is None:
        return None
    key = ref.read_text()
    key = key if key.startswith("0x") else "0x" + key
    if len(key) != 66:
        raise ConfigError(f"{where} ({ref.describe()}) must hold a 32-byte hex private key")
    return key


def build_adapter(name: str, chain: EvmChain | SolanaChain, with_signer: bool = True,
                  role: str = "relayer") -> ChainAdapter:
    """role "relayer" signs with `signer`; role "sender" (the SDK) with `sender`, else `signer`."""
    field = "sender" if role == "sender" and chain.sender is not None else "signer"
    ref: KeyRef | None = getattr(chain, field) if with_signer else None
    where = f"chains.{name}.{field}"
    if isinstance(chain, EvmChain):
        from adapters.evm import EvmAdapter

        return EvmAdapter(name, chain, _evm_key(ref, where))
    from adapters.solana import SolanaAdapter, load_keypair

    return SolanaAdapter(name, chain, load_keypair(ref.read_text(), f"{where} ({ref.describe()})") if ref else None)


def build_adapters(config: TesseraConfig, with_signers: bool = True) -> dict[int, ChainAdapter]:
    return {chain.domain: build_adapter(name, chain, with_signers) for name, chain in config.chains.items()}
