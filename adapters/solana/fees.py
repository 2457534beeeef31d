"""Delivery fees and the pause switch on Solana.

Fees: the program deployed today (contracts/solana/tessera.so) does not charge Send: the fee config,
the fee-vault PDA and ClaimFees of issue 14 are not in the program yet (docs/PROTOCOL.md "Fees",
"Solana"). Until they are, a Solana send's quote is 0 lamports and no fee is recorded, which is
what these calls report — so the relayer's payment policy (relay/policy.py) treats a Solana message
as unpaid (`minimum` refuses it unless its sender is allowed).

Pause: Pause / Unpause (instructions 24 / 25) set byte 11 of the committee config, signed by the
admin it records; while set, Send, Deliver and VerifyRoot fail with GATEWAY_PAUSED. DeliverWithProof
is not gated (docs/SECURITY.md): a root verified before the pause can still deliver its messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from solana.rpc.commitment import Confirmed

from adapters.solana.program import CommitteeConfig, committee_address, pause_ix
from adapters.solana.tx import TransactionRefused
from relay.errors import TesseraError

if TYPE_CHECKING:
    from adapters.solana.gateway import SolanaAdapter


class SolanaAdminError(TesseraError):
    """A pause or unpause the program refused; the message says why and what to do."""


class SolanaGatewayFees:
    """The fee and pause calls of SolanaAdapter (mixed into it)."""

    async def quote(self, dst_domain: int, payload_length: int, sender: bytes | None = None) -> int:
        """Lamports Send charges now: none (the program has no fee instruction yet)."""
        return 0

    async def fee_paid(self, source_tx: str, message_id: bytes) -> int | None:
        """None: the program records no fee for a send (see the module docstring)."""
        return None

    async def is_paused(self: "SolanaAdapter") -> bool:
        data = await self.rpc.account_data(committee_address(self.program_id)[0], self.program_id)
        if data is None:
            raise SolanaAdminError(f"{self.name}: no committee config at {committee_address(self.program_id)[0]}: "
                                   "is the program initialised (InitCommittee)?")
        return CommitteeConfig.decode(data).paused

    async def pause(self: "SolanaAdapter") -> str:
        return await self._set_paused(True)

    async def unpause(self: "SolanaAdapter") -> str:
        return await self._set_paused(False)

    async def _set_paused(self: "SolanaAdapter", paused: bool) -> str:
        signer = self._require_signer()
        try:
            sig = await self.tx.transact([pause_ix(self.program_id, signer.pubkey(), paused)],
                                         commitment=Confirmed)
        except TransactionRefused as exc:
            hint = " (only the committee config's admin may: sign with its key, --key)"
            raise SolanaAdminError(f"{self.name}: {'Pause' if paused else 'Unpause'} refused: {exc}{hint}") from None
        return str(sig)
