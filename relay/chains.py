"""What a chain adapter gives the rest of Tessera. Chain-specific code ends behind this interface
(adapters/evm.py, adapters/solana.py); relay/ and attest/ only see these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol, runtime_checkable

from relay.envelope import Envelope


@dataclass(frozen=True, slots=True)
class Observation:
    """An envelope a gateway emitted, seen in a source transaction that reached finality."""

    envelope: Envelope
    source_tx: str  # EVM tx hash (0x-hex) or Solana signature (base58)
    position: int  # block number or slot
    cursor: str  # where a watcher resumes after this observation (adapter-defined, opaque)
    # Unix time of the block/slot that carried the transaction (EVM block timestamp, Solana
    # blockTime); None when the node cannot tell. PROOF_ATTESTATIONs derive checked_at from it.
    block_time: int | None = None


class DeliveryState(enum.Enum):
    PENDING = "pending"  # sent, not yet final on the destination
    CONFIRMED = "confirmed"  # final, and the gateway recorded the message as delivered
    REVERTED = "reverted"  # included but failed
    DROPPED = "dropped"  # not included and can no longer be (expired blockhash, replaced nonce)


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    state: DeliveryState
    detail: str = ""


@dataclass(slots=True)
class EndpointHealth:
    url: str
    healthy: bool = True
    consecutive_errors: int = 0
    total_errors: int = 0
    last_error: str = ""
    last_latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    envelope: Envelope
    epoch: int
    signature: bytes  # G1, 64 bytes
    extra: dict = field(default_factory=dict)  # adapter hints (e.g. Solana's hash-to-curve k, y)


@runtime_checkable
class ChainAdapter(Protocol):
    name: str
    domain: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def watch(self, cursor: str | None) -> AsyncIterator[Observation]:
        """Yield every gateway envelope from `cursor` on, once final, forever."""
        ...

    async def reobserve(self, source_tx: str) -> list[Observation]:
        """Read one source transaction again; empty if it is not (or no longer) final."""
        ...

    async def find_nonce(self, nonce: int) -> Observation | None:
        """Locate the final observation of the given source nonce (nonce-gap repair)."""
        ...

    async def is_delivered(self, message_id: bytes) -> bool: ...

    async def submit(self, delivery: SignedDelivery) -> str:
        """Send one delivery transaction; return its id."""
        ...

    async def delivery_status(self, tx_id: str) -> DeliveryStatus: ...

    def health(self) -> list[EndpointHealth]: ...
