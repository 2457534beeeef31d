"""Delivery fees and the pause switch of the EVM Gateway (contracts/evm/src/Gateway.sol).

`quote(dst, payload_length)` is the gateway's own view function: the flat fee plus the
destination's delivery cost — (baseGas + gasPerByte × length) × the gas price the owner posted —
converted into this chain's wei with prices from the FeedStore (Tessera's committee-signed feeds),
times (1 + margin). The gateway refuses to quote on a stale or missing price; so does this module,
with the reason and what to do. Senders the owner marks `flatFeeSender` (the task boards) pay
`fee()` only, so `quote(..., sender=)` asks for that sender's price.

`fee_paid(source_tx, message_id)` reads `FeePaid(messageId, payer, fee, refund)`, emitted beside
`MessageSent` by the send: what the relayer's payment policy (relay/policy.py) compares.

Owner operations (`set_destination_fee`, `set_price_feeds`, `set_beneficiary`, `set_flat_fee_sender`,
`pause`, `unpause`) and the beneficiary's `claim_fees` are sent with the adapter's signer:
run them with the owner's (or the beneficiary's) key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from adapters.evm.deploy import contract, transact
from adapters.evm import rpc
from adapters.evm.rpc import checksum, decode_revert, revert_data, to_hex
from relay.errors import TesseraError

if TYPE_CHECKING:
    from adapters.evm.gateway import EvmAdapter

MAX_MARGIN_BPS = 10_000


class FeeError(TesseraError):
    """A fee operation the gateway refuses; the message says why and what to do."""


# What to do about each refusal, by custom error name.
_ADVICE = {
    "PriceStale": "the price feed is older than the destination's maxPriceAge: push a fresh price "
                  "(the feed pusher, `relay feeds push`) before quoting or sending",
    "PriceMissing": "the price feed is not registered or has no round: register it on the FeedStore and push a price",
    "PriceNotPositive": "the feed's latest price is not positive: check the feed's sources",
    "PriceFeedsNotSet": "the owner has not set the FeedStore (Gateway.setPriceFeeds)",
    "NotOwner": "sign with the gateway owner's key",
    "NotBeneficiary": "sign with the beneficiary's key (Gateway.beneficiary())",
    "NothingToClaim": "no fees have accrued since the last claim",
    "GatewayPaused": "the gateway is paused: the owner runs `relay admin unpause`",
    "NotPaused": "the gateway is not paused",
    "FeeTooLow": "pay at least the quote (Gateway.quote(dstDomain, payloadLength))",
}


def explain(reason: str) -> str:
    name = reason.split("(", 1)[0]
    advice = _ADVICE.get(name)
    return f"{reason}: {advice}" if advice else reason


@dataclass(frozen=True, slots=True)
class DestinationFee:
    """Gateway.DestinationFee: what one delivery to `dst_domain` costs there. gas_price in the
    destination token's base units per gas unit (wei, or lamports for a Solana destination whose
    "gas" is counted in lamports at price 1); dst_decimals 18 (ETH) or 9 (SOL)."""

    gas_price: int
    base_gas: int
    gas_per_byte: int
    dst_decimals: int
    margin_bps: int
    max_price_age: int  # seconds
    dst_price_feed: str  # feed id, e.g. "SOL/USD"

    def __post_init__(self) -> None:
        if not 0 <= self.margin_bps <= MAX_MARGIN_BPS:
            raise FeeError(f"margin_bps {self.margin_bps} must be within 0..{MAX_MARGIN_BPS}")
        if self.gas_price and self.max_price_age <= 0:
            raise FeeError("max_price_age must be positive seconds")
        if not 0 < len(self.dst_price_feed.encode()) <= 32:
            raise FeeError(f"dst_price_feed {self.dst_price_feed!r} must be 1..32 bytes")

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.gas_price, self.base_gas, self.gas_per_byte, self.dst_decimals, self.margin_bps,
                self.max_price_age, feed_id(self.dst_price_feed))


def feed_id(name: str) -> bytes:
    """A feed name as FeedStore keys it: the ASCII bytes, zero-padded to 32."""
    raw = name.encode()
    if not 0 < len(raw) <= 32:
        raise FeeError(f"feed id {name!r} must be 1..32 bytes")
    return raw.ljust(32, b"\0")


def delivery_cost(cfg: DestinationFee, payload_length: int, src_price: int, src_feed_decimals: int,
                  dst_price: int, dst_feed_decimals: int, src_decimals: int = 18) -> int:
    """The gateway's `deliveryCost` computed off-chain (same rounding): the destination's cost in
    this chain's base units with the margin. Used by tests and bench/quote_accuracy.py."""
    if cfg.gas_price == 0:
        return 0
    cost = (cfg.base_gas + cfg.gas_per_byte * payload_length) * cfg.gas_price
    num = cost * dst_price * 10 ** (src_decimals + src_feed_decimals) * (MAX_MARGIN_BPS + cfg.margin_bps)
    den = src_price * 10 ** (cfg.dst_decimals + dst_feed_decimals) * MAX_MARGIN_BPS
    return -(-num // den)


class GatewayFees:
    """The fee and pause calls of EvmAdapter (mixed into it; uses its pool, gateway and signer)."""

    async def _view(self: "EvmAdapter", what: str, fn: Any) -> Any:
        data = fn._encode_transaction_data()
        try:
            raw = await self._call(f"eth_call {what}", lambda w3: rpc.eth_call(w3, {"to": self.gateway_address, "data": data}))
        except ContractLogicError as exc:
            raise FeeError(f"chain {self.name}: Gateway.{what} refused: "
                           f"{explain(decode_revert(self.abi, revert_data(exc)))}") from None
        return bytes(raw)

    async def quote(self: "EvmAdapter", dst_domain: int, payload_length: int, sender: bytes | None = None) -> int:
        """What Gateway.send charges now for `payload_length` bytes to `dst_domain` (wei): the quote,
        or fee() for a flat-fee sender (a task board) when `sender` (32 bytes) is one. FeeError on a
        stale or missing price (never 0 in their place)."""
        if sender is not None and int.from_bytes(sender[:12], "big") == 0:
            flat = await self._view("flatFeeSender", self._gateway.functions.flatFeeSender(
                to_checksum_address(sender[12:])))
            if int.from_bytes(flat[-32:], "big"):
                return int.from_bytes(await self._view("fee", self._gateway.functions.fee()), "big")
        raw = await self._view("quote", self._gateway.functions.quote(dst_domain, payload_length))
        return int.from_bytes(raw[-32:], "big")

    async def fee_paid(self: "EvmAdapter", source_tx: str, message_id: bytes) -> int | None:
        """The fee the send of `message_id` paid (its FeePaid event in `source_tx`), None when the
        transaction has no FeePaid for it (a gateway from before fees, or not a send of it)."""
        receipt = await self.tx.receipt(source_tx)
        if receipt is None:
            return None
        topic = _fee_paid_topic(self.abi)
        for entry in receipt["logs"]:
            topics = [bytes(t) for t in entry["topics"]]
            if (checksum(entry["address"]) == self.gateway_address and len(topics) == 3
                    and to_hex(topics[0]) == topic and topics[1] == message_id):
                fee, _refund = abi_decode(["uint256", "uint256"], bytes(entry["data"]))
                return int(fee)
        return None

    async def accrued_fees(self: "EvmAdapter") -> int:
        return int.from_bytes(await self._view("accruedFees", self._gateway.functions.accruedFees()), "big")

    async def beneficiary(self: "EvmAdapter") -> str:
        raw = await self._view("beneficiary", self._gateway.functions.beneficiary())
        return to_checksum_address(raw[-20:])

    async def is_paused(self: "EvmAdapter") -> bool:
        return bool(int.from_bytes(await self._view("paused", self._gateway.functions.paused()), "big"))

    async def _owner_tx(self: "EvmAdapter", what: str, fn: Any, timeout: float = 60.0) -> str:
        try:
            tx = await self.tx.transaction(self.gateway_address, fn._encode_transaction_data())
        except ContractLogicError as exc:
            raise FeeError(f"chain {self.name}: Gateway.{what} refused: "
                           f"{explain(decode_revert(self.abi, revert_data(exc)))}") from None
        mined = await self.tx.wait(await self.tx.send(tx), timeout)
        if mined.receipt["status"] != 1:
            raise FeeError(f"chain {self.name}: Gateway.{what} transaction {mined.tx_hash} reverted")
        return mined.tx_hash

    async def claim_fees(self: "EvmAdapter") -> tuple[int, str]:
        """Gateway.claimFees() signed by the beneficiary: (wei paid, tx hash)."""
        amount = await self.accrued_fees()
        return amount, await self._owner_tx("claimFees", self._gateway.functions.claimFees())

    async def pause(self: "EvmAdapter") -> str:
        return await self._owner_tx("pause", self._gateway.functions.pause())

    async def unpause(self: "EvmAdapter") -> str:
        return await self._owner_tx("unpause", self._gateway.functions.unpause())

    async def set_destination_fee(self: "EvmAdapter", dst_domain: int, cfg: DestinationFee | dict[str, Any]) -> str:
        """Gateway.setDestinationFee (owner only); `cfg` a DestinationFee or its fields by name."""
        if isinstance(cfg, dict):
            cfg = DestinationFee(**cfg)
        return await self._owner_tx("setDestinationFee",
                                    self._gateway.functions.setDestinationFee(dst_domain, cfg.as_tuple()))

    async def set_beneficiary(self: "EvmAdapter", beneficiary: str) -> str:
        return await self._owner_tx("setBeneficiary",
                                    self._gateway.functions.setBeneficiary(to_checksum_address(beneficiary)))

    async def set_price_feeds(self: "EvmAdapter", store: str, native_price_feed: str) -> str:
        return await self._owner_tx("setPriceFeeds", self._gateway.functions.setPriceFeeds(
            to_checksum_address(store), feed_id(native_price_feed)))


def _fee_paid_topic(abi: list[dict[str, Any]]) -> str:
    event = next(e for e in abi if e.get("type") == "event" and e.get("name") == "FeePaid")
    return to_hex(event_abi_to_log_topic(event))


async def configure_gateway_fees(
    w3: AsyncWeb3, owner: LocalAccount, gateway: str, *, beneficiary: str | None = None,
    price_feeds: str | None = None, native_price_feed: str | None = None,
    flat_fee_senders: tuple[str, ...] = (), destinations: dict[int, DestinationFee] | None = None,
) -> None:
    """The owner's fee settings in one place (deployment and the localnet): beneficiary, FeedStore
    and this chain's token feed, task boards as flat-fee senders, destination costs. Each is skipped
    when not given, so a second run with the same values is harmless."""
    gw = contract(w3, "Gateway", gateway)
    if beneficiary is not None:
        await transact(w3, owner, gw.functions.setBeneficiary(to_checksum_address(beneficiary)))
    if price_feeds is not None:
        if native_price_feed is None:
            raise FeeError("native_price_feed (this chain's token in USD, e.g. \"ETH/USD\") is needed with price_feeds")
        await transact(w3, owner, gw.functions.setPriceFeeds(to_checksum_address(price_feeds), feed_id(native_price_feed)))
    for sender in flat_fee_senders:
        await transact(w3, owner, gw.functions.setFlatFeeSender(to_checksum_address(sender), True))
    for dst, cfg in (destinations or {}).items():
        await transact(w3, owner, gw.functions.setDestinationFee(dst, cfg.as_tuple()))
