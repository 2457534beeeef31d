"""Solana localnet server: the LiteSVM runtime behind the standard Solana JSON-RPC and PubSub APIs.

Run it with `python -m adapters.solana_localnet`; in tests use `adapters.solana_localnet.testing`.
"""

from adapters.solana_localnet.errors import LocalnetError, PortInUseError, ProgramLoadError, RpcError
from adapters.solana_localnet.ledger import Ledger, LedgerConfig
from adapters.solana_localnet.server import LocalnetServer, ServerConfig

__all__ = [
    "Ledger",
    "LedgerConfig",
    "LocalnetError",
    "LocalnetServer",
    "PortInUseError",
    "ProgramLoadError",
    "RpcError",
    "ServerConfig",
]
