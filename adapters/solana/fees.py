"""Delivery fees and the pause switch on Solana.

Fees (docs/PROTOCOL.md "Fees", "Solana"; the program's side in contracts/solana/src/fees.c and
adapters/solana/fee_program.py): once the committee config's admin set a fee config for a destination
(SetFeeConfig), a send pays the quote the program computes from that config and two of its own feed
accounts (destination token and SOL). `quote` computes the same figure off-chain from the same
accounts; `send_message` attaches max_fee = that quote (SendPaid); `fee_paid` reads the
("TESSERA_FEE", message_id, fee) log of the send's transaction. Before any fee config exists the
program does not charge: the quote is 0 and no fee is recorded (None).

Pause: Pause / Unpause (instructions 24 / 25) set byte 11 of the committee config, signed by the
admin it records; while set, Send, Deliver and VerifyRoot fail with GATEWAY_PAUSED. DeliverWithProof
is not gated (docs/SECURITY.md): a root verified before the pause can still deliver its messages.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from solders.signature import Signature

from adapters.solana.fee_program import (
    FeeAccount,
    FeeParams,
    claim_fees_ix,
    fee_address,
    fee_paid_from_logs,
    quote_lamports,
    set_beneficiary_ix,
    set_fee_config_ix,
    vault_address,
    vault_beneficiary,
)
from adapters.solana.feeds import FeedAccount, feed_address
from adapters.solana.program import CommitteeConfig, committee_address, outbox_address, pause_ix, taskboard_address
from adapters.solana.tx import TransactionRefused
from relay.errors import TesseraError

if TYPE_CHECKING:
    from adapters.solana.gateway import SolanaAdapter


class SolanaAdminError(TesseraError):
    """A pause or unpause the program refused; the message says why and what to do."""


class SolanaGatewayFees:
    """The fee and pause calls of SolanaAdapter (mixed into it)."""

    async def fees_required(self: "SolanaAdapter") -> bool:
        """Whether the program charges sends (byte 10 of the outbox, set by the first SetFeeConfig)."""
        data = await self.rpc.account_data(outbox_address(self.program_id)[0], self.program_id)
        return data is not None and len(data) > 10 and data[10] != 0

    async def fee_config(self: "SolanaAdapter", dst_domain: int) -> FeeAccount | None:
        data = await self.rpc.account_data(fee_address(self.program_id, dst_domain), self.program_id)
        return None if data is None else FeeAccount.decode(data)

    async def _feed_price(self: "SolanaAdapter", address: Pubkey, max_age_s: int) -> tuple[int, int]:
        data = await self.rpc.account_data(address, self.program_id)
        if data is None:
            raise SolanaAdminError(f"{self.name}: fee price feed {address} has no feed account of the program: "
                                   "sends are refused (FEE_FEED_INVALID) until it is pushed")
        feed = FeedAccount.decode(data)
        if feed.price_i128 is None or feed.price <= 0 or feed.price >= 2**64:
            raise SolanaAdminError(f"{self.name}: feed {feed.feed_id} has no positive price: sends are refused")
        if feed.observed_at == 0 or time.time() * 1000 > feed.observed_at + max_age_s * 1000:
            raise SolanaAdminError(f"{self.name}: feed {feed.feed_id} is stale (observed_at {feed.observed_at} ms, "
                                   f"max age {max_age_s} s): sends are refused (FEE_PRICE_STALE)")
        return feed.price, feed.decimals

    async def quote(self: "SolanaAdapter", dst_domain: int, payload_length: int, sender: bytes | None = None) -> int:
        """Lamports SendPaid charges now for `payload_length` bytes to `dst_domain`, computed from the
        fee config and feed accounts as the program does. 0 while the program charges nothing (no fee
        config yet) and for the task board's sends (not charged); SolanaAdminError when the program
        would refuse the send (no config for that destination, a stale or missing price)."""
        if sender is not None and sender == bytes(taskboard_address(self.program_id)):
            return 0
        cfg = await self.fee_config(dst_domain)
        if cfg is None:
            if await self.fees_required():
                raise SolanaAdminError(f"{self.name}: no fee config for domain {dst_domain}: the program refuses "
                                       "sends there (FEE_NOT_CONFIGURED); `relay fees set-destination`")
            return 0
        p = cfg.params
        dst_price, dst_dec = await self._feed_price(p.dst_feed, p.max_age_s)
        sol_price, sol_dec = await self._feed_price(p.sol_feed, p.max_age_s)
        return quote_lamports(gas_price=p.gas_price, base_gas=p.base_gas, gas_per_byte_milli=p.gas_per_byte_milli,
                              dst_decimals=p.dst_decimals, margin_bps=p.margin_bps, dst_price=dst_price,
                              dst_feed_decimals=dst_dec, sol_price=sol_price, sol_feed_decimals=sol_dec,
                              payload_len=payload_length)

    async def fee_paid(self: "SolanaAdapter", source_tx: str, message_id: bytes) -> int | None:
        """The lamports the send of `message_id` paid (its TESSERA_FEE log in `source_tx`); None when
        the transaction records no fee for it (an unpaid Send, a task board's send)."""
        tx = await self.rpc.transaction(Signature.from_string(source_tx), Confirmed)
        if tx is None or tx.transaction.meta is None:
            return None
        return fee_paid_from_logs(list(tx.transaction.meta.log_messages or []), message_id)

    async def accrued_fees(self: "SolanaAdapter") -> int:
        """Lamports of the fee vault above its rent-exempt minimum (what ClaimFees pays)."""
        address = vault_address(self.program_id)
        info = (await self.rpc.call("getAccountInfo", lambda c: c.get_account_info(address, commitment=Confirmed))).value
        if info is None:
            return 0
        rent = (await self.rpc.call("getMinimumBalanceForRentExemption",
                                    lambda c: c.get_minimum_balance_for_rent_exemption(len(info.data)))).value
        return max(0, info.lamports - rent)

    async def beneficiary(self: "SolanaAdapter") -> str:
        data = await self.rpc.account_data(vault_address(self.program_id), self.program_id)
        who = None if data is None else vault_beneficiary(data)
        return "none" if who is None else str(who)

    async def _admin_tx(self: "SolanaAdapter", what: str, ix: Any, hint: str) -> str:
        try:
            sig = await self.tx.transact([ix], commitment=Confirmed)
        except TransactionRefused as exc:
            raise SolanaAdminError(f"{self.name}: {what} refused: {exc}{hint}") from None
        return str(sig)

    async def set_destination_fee(self: "SolanaAdapter", dst_domain: int, cfg: FeeParams | dict[str, Any]) -> str:
        """SetFeeConfig (the committee config's admin). `cfg` a FeeParams, or the CLI's fields by name:
        gas_price, base_gas, gas_per_byte (may be fractional), dst_decimals, margin_bps, max_price_age,
        dst_price_feed (feed id), native_price_feed (SOL's feed id)."""
        if isinstance(cfg, dict):
            if not cfg.get("native_price_feed"):
                raise SolanaAdminError(f"{self.name}: a Solana fee config names SOL's price feed too (--native-feed)")
            cfg = FeeParams(gas_price=int(cfg["gas_price"]), base_gas=int(cfg["base_gas"]),
                            gas_per_byte_milli=round(float(cfg["gas_per_byte"]) * 1000),
                            dst_decimals=int(cfg["dst_decimals"]), margin_bps=int(cfg["margin_bps"]),
                            max_age_s=int(cfg["max_price_age"]),
                            dst_feed=feed_address(self.program_id, cfg["dst_price_feed"])[0],
                            sol_feed=feed_address(self.program_id, cfg["native_price_feed"])[0])
        signer = self._require_signer()
        return await self._admin_tx("SetFeeConfig", set_fee_config_ix(self.program_id, signer.pubkey(), dst_domain, cfg),
                                    " (only the committee config's admin may: sign with its key, --key)")

    async def set_beneficiary(self: "SolanaAdapter", beneficiary: str) -> str:
        signer = self._require_signer()
        return await self._admin_tx("SetBeneficiary", set_beneficiary_ix(self.program_id, signer.pubkey(),
                                                                         Pubkey.from_string(beneficiary)),
                                    " (only the committee config's admin may: sign with its key, --key)")

    async def claim_fees(self: "SolanaAdapter") -> tuple[int, str]:
        """ClaimFees signed by the beneficiary: (lamports paid, signature)."""
        amount = await self.accrued_fees()
        signer = self._require_signer()
        tx = await self._admin_tx("ClaimFees", claim_fees_ix(self.program_id, signer.pubkey()),
                                  " (only the beneficiary the admin set may claim: sign with its key, --key)")
        return amount, tx

    async def send_accounts(self: "SolanaAdapter", dst_domain: int, payload_length: int) -> tuple[int, Pubkey, Pubkey] | None:
        """(max_fee = the quote now, dst feed, SOL feed) for SendPaid; None while sends are not charged."""
        cfg = await self.fee_config(dst_domain)
        if cfg is None:
            if await self.fees_required():
                raise SolanaAdminError(f"{self.name}: no fee config for domain {dst_domain}: the program refuses "
                                       "sends there (FEE_NOT_CONFIGURED)")
            return None
        return await self.quote(dst_domain, payload_length), cfg.params.dst_feed, cfg.params.sol_feed

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
