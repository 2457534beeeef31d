"""Delivery fees on Solana: what a send through the Tessera program costs, and what it paid.

The program deployed today (contracts/solana/tessera.so) does not charge Send: the fee config, the
fee-vault PDA, ClaimFees and Pause/Unpause of issue 14 are not in the program yet (docs/PROTOCOL.md
"Fees", "Solana"). Until they are, a Solana send's quote is 0 lamports and no fee is recorded, which
is what these calls report — so the relayer's payment policy (relay/policy.py) treats a Solana
message as unpaid (`minimum` and `onchain_quote` refuse it unless its sender is allowed).
"""

from __future__ import annotations


class SolanaGatewayFees:
    """The fee calls of SolanaAdapter (mixed into it)."""

    async def quote(self, dst_domain: int, payload_length: int, sender: bytes | None = None) -> int:
        """Lamports Send charges now: none (the program has no fee instruction yet)."""
        return 0

    async def fee_paid(self, source_tx: str, message_id: bytes) -> int | None:
        """None: the program records no fee for a send (see the module docstring)."""
        return None
