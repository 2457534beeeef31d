"""Feeds on an EVM chain: deploying FeedStore + one TesseraAggregator per feed, pushing signed
reports (`EvmFeedTarget`, the pusher's EVM target) and the `evm_pool` price source.

Contracts: contracts/evm/src/feeds/ (docs/FEEDS.md "On-chain: EVM").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

import aiohttp
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError

from adapters.evm import deploy as evm_deploy
from adapters.endpoints import EndpointPool
from adapters.evm.gateway import (_bump, _make_client, _verifier_errors, current_fees, hash_to_g1_hint, is_retryable,
                          receipt_or_none, send_signed)
from relay.interfaces import EndpointHealth
from relay.errors import ConfigError
from relay.feeds.config import EvmPoolSourceConfig, FeedConfig
from relay.interfaces import FeedNotNewer
from relay.feeds.report import FeedError, FeedReport, encode_feed_id
from relay.feeds.signed import SignedReport
from relay.feeds.sources import Quote, SourceError, check_fresh, register_source
from relay.log import get_logger

if TYPE_CHECKING:
    from relay.config import EvmChain, KeyRef, TesseraConfig

log = get_logger("evm.feeds")

FEED_STORE = "FeedStore"
AGGREGATOR = "TesseraAggregator"
GAS_MULTIPLIER = 1.2
RECEIPT_TIMEOUT_S = 60.0
STUCK_AFTER_S = 20.0  # seconds without a receipt before an update is re-sent with bumped fees
RPC_TIMEOUT_S = 15.0
# getReserves() of a Uniswap-v2 pair (and of ConstantProductPool).
GET_RESERVES = "0x0902f1ac"
_UINT112_MAX = 2**112 - 1


class EvmFeedError(FeedError):
    """Base class of the EVM feed errors."""


class FeedPushError(EvmFeedError):
    """A report the FeedStore refused, or a push that could not be sent. `retryable` says whether
    sending the same report again later may succeed (endpoint trouble) or never will (a revert)."""

    def __init__(self, message: str, reason: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


def aggregator_key(feed_id: str) -> str:
    """The name an aggregator's address has under `[chains.<evm>.contracts]`."""
    return f"Aggregator:{feed_id}"


# --- deployment -----------------------------------------------------------------------------------


async def deploy_feeds(
    w3: AsyncWeb3, account: LocalAccount | str, verifier: str, feeds: Mapping[str, FeedConfig], owner: str | None = None
) -> dict[str, str]:
    """Deploys a FeedStore bound to `verifier`, registers every feed (id, decimals, description) and
    deploys one TesseraAggregator per feed. Returns {"FeedStore": addr, "Aggregator:<id>": addr}."""
    signer = Account.from_key(account) if isinstance(account, str) else account
    store_address = await evm_deploy.deploy(w3, signer, FEED_STORE, to_checksum_address(verifier), owner or signer.address)
    store = evm_deploy.contract(w3, FEED_STORE, store_address)
    contracts = {FEED_STORE: store_address}
    for feed_id, feed in feeds.items():
        fid = encode_feed_id(feed_id)
        if owner is not None and owner != signer.address:
            raise EvmFeedError("register the feeds before handing the FeedStore to another owner: deploy with owner=None")
        await evm_deploy.transact(w3, signer, store.functions.registerFeed(fid, feed.decimals, feed.description))
        contracts[aggregator_key(feed_id)] = await evm_deploy.deploy(w3, signer, AGGREGATOR, store_address, fid)
    log.info("feed contracts deployed", **contracts)
    return contracts


def hinted_update_args(signed: SignedReport) -> tuple[bytes, int, bytes, int, int, int]:
    """(report, epoch, signature, k, y, ySqrt): the arguments of FeedStore.updateWithHint /
    tryUpdateWithHint and PullConsumer.settle, for a pull consumer building its own transaction."""
    k, y, y_sqrt = hash_to_g1_hint(signed.digest)
    return signed.report.encode(), signed.epoch, signed.signature, k, y, y_sqrt


# --- the push target ------------------------------------------------------------------------------


def _feed_store_errors() -> list[dict[str, Any]]:
    return [e for e in evm_deploy.load_artifact(FEED_STORE).abi if e.get("type") == "error"] + _verifier_errors()


@dataclass
class _InFlight:
    """An update sent and not yet mined: its nonce is reused (with higher fees) by the next send."""

    tx: dict[str, Any]
    hashes: list[str]
    sent_at: float


class EvmFeedTarget:
    """Pushes signed reports into a FeedStore with `updateWithHint` (no modexp on-chain) and reads
    the stored latest round back.

    `push` estimates first, so a refused report costs no gas: one the store already has (or has a
    newer one of) comes back as `FeedNotNewer`; any other refusal raises FeedPushError naming the
    contract's error. Transactions are sent one at a time per target (its own nonce sequence).

    Every RPC goes through an endpoint pool (adapters/endpoints.py): the chain's `rpc_urls` in order,
    failing over on connection errors, timeouts and 429/5xx. An update not mined after
    `stuck_after_s` is re-sent with the same nonce and fees bumped by 12.5 % (replacing it, as the
    messaging adapter does); one still unmined when `push` gives up (`receipt_timeout_s`) is
    replaced by the next push — with that push's newer report — instead of queueing behind it."""

    def __init__(self, endpoints: AsyncWeb3 | Sequence[str], account: LocalAccount | str, store_address: str, *,
                 name: str = "evm", receipt_timeout_s: float = RECEIPT_TIMEOUT_S,
                 stuck_after_s: float = STUCK_AFTER_S, rpc_timeout_s: float = RPC_TIMEOUT_S,
                 poll_interval_s: float = 0.05) -> None:
        if isinstance(endpoints, AsyncWeb3):  # one provider the caller owns (and closes)
            given = endpoints
            self.pool: EndpointPool[AsyncWeb3] = EndpointPool(name, ["(given provider)"], lambda _url: given,
                                                              is_retryable, timeout=rpc_timeout_s)
            self._owns_clients = False
        else:
            self.pool = EndpointPool(name, list(endpoints), lambda url: _make_client(url, rpc_timeout_s),
                                     is_retryable, timeout=rpc_timeout_s)
            self._owns_clients = True
        self.account = Account.from_key(account) if isinstance(account, str) else account
        self.store_address = to_checksum_address(store_address)
        # Offline: encodes calls and decodes results; every call goes out through the pool.
        self._store = AsyncWeb3().eth.contract(address=self.store_address,
                                               abi=evm_deploy.load_artifact(FEED_STORE).abi)
        self.name = name
        self.receipt_timeout_s = receipt_timeout_s
        self.stuck_after_s = stuck_after_s
        self.poll_interval_s = poll_interval_s
        self._lock = asyncio.Lock()
        self._errors = _feed_store_errors()
        self._chain_id: int | None = None
        self._in_flight: _InFlight | None = None
        self.last_receipt: Any = None  # of the last successful push (the benchmark reads its gas)

    @classmethod
    def from_config(cls, config: "TesseraConfig", chain_name: str, key: "KeyRef | None" = None,
                    **options: Any) -> "EvmFeedTarget":
        """The target for `[chains.<chain_name>]` (an evm chain whose contracts hold `FeedStore`).
        `key` is the pusher's own account; without one the chain's `sender`."""
        chain = config.chains.get(chain_name)
        if chain is None or getattr(chain, "kind", None) != "evm":
            raise ConfigError(f"chains.{chain_name} is not a configured evm chain: add it under [chains.{chain_name}]")
        store = chain.contracts.get(FEED_STORE)
        if store is None:
            raise ConfigError(f"chains.{chain_name}.contracts has no FeedStore: deploy the feed contracts "
                              "(`relay localnet up` does) and add its address")
        ref = key or chain.sender
        if ref is None:
            raise ConfigError(f"no key to pay for feed updates on {chain_name}: set [feed_push] evm_key")
        try:
            account = Account.from_key(ref.read_text())
        except ValueError:
            raise ConfigError(f"{ref.describe()} does not hold a 0x-hex secp256k1 private key") from None
        options.setdefault("name", chain_name)
        return cls(chain.rpc_urls, account, store, **options)

    async def close(self) -> None:
        if self._owns_clients:
            for client in self.pool.clients:
                await client.provider.disconnect()

    async def __aenter__(self) -> "EvmFeedTarget":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def health(self) -> list[EndpointHealth]:
        return self.pool.health()

    @property
    def w3(self) -> AsyncWeb3:
        """A client for the caller's own reads (an aggregator, say): the pool's preferred endpoint."""
        return self.pool.preferred

    async def _call(self, what: str, fn: Any) -> Any:
        return await self.pool.call(f"{what} ({self.name})", fn)

    async def _read(self, function: Any, block: int | str = "latest") -> Any:
        """eth_call of a FeedStore view function through the pool, decoded."""
        data = function._encode_transaction_data()
        raw = await self._call("eth_call", lambda w3: w3.eth.call({"to": self.store_address, "data": data},
                                                                   block_identifier=block))
        types = [o["type"] for o in function.abi["outputs"]]
        values = abi_decode(types, bytes(raw))
        return values if len(values) != 1 else values[0]

    async def latest(self, feed_id: str) -> FeedReport | None:
        """The stored latest round as a FeedReport (None before the first update). published_at is
        the stored second × 1000: the store keeps seconds (the ms are in the FeedUpdated event)."""
        fid = encode_feed_id(feed_id)
        registered, decimals, round_, observed_at = await self._read(self._store.functions.feed(fid))
        if not registered:
            raise EvmFeedError(f"{self.name}: feed {feed_id!r} is not registered in FeedStore {self.store_address}: "
                               "register it (FeedStore.registerFeed) or remove it from the pusher")
        if round_ == 0:
            return None
        answer, _, updated_at, confidence, observations = await self._read(self._store.functions.getRound(fid, round_))
        return FeedReport(feed_id, round_, answer, confidence, decimals, observations, observed_at, updated_at * 1000)

    async def push(self, signed: SignedReport) -> str | FeedNotNewer:
        """Sends updateWithHint and waits for the receipt; returns the transaction hash (0x-hex), or
        FeedNotNewer when the store already holds this round or a newer one."""
        call = self._store.functions.updateWithHint(*hinted_update_args(signed))
        async with self._lock:
            try:
                return await self._send(signed, call)
            except EvmFeedError:
                raise
            except Exception as exc:  # noqa: BLE001 - transport trouble: worth a retry
                raise FeedPushError(
                    f"{self.name}: pushing {signed.feed_id} round {signed.round} failed: {exc!r}; "
                    f"check chains.{self.name}.rpc_urls and retry", retryable=True,
                ) from exc

    async def _fees(self) -> tuple[int, int]:
        return await current_fees(self._call)

    async def _count(self, block: str) -> int:
        address = self.account.address
        return await self._call("eth_getTransactionCount", lambda w3: w3.eth.get_transaction_count(address, block))

    async def _nonce(self) -> tuple[int, _InFlight | None]:
        """The nonce for this update, and the unmined update it replaces (None: a fresh nonce)."""
        stuck = self._in_flight
        if stuck is not None:
            if await self._count("latest") <= int(stuck.tx["nonce"]):
                return int(stuck.tx["nonce"]), stuck
            self._in_flight = None  # mined after all (or its nonce went elsewhere)
        return await self._count("pending"), None

    async def _send_raw(self, tx: dict[str, Any]) -> str:
        return await send_signed(self._call, self.account, tx)

    async def _receipt(self, tx_hash: str) -> Any | None:
        return await receipt_or_none(self._call, tx_hash)

    async def _send(self, signed: SignedReport, call: Any) -> str | FeedNotNewer:
        tx: dict[str, Any] = {"from": self.account.address, "to": self.store_address,
                              "data": call._encode_transaction_data(), "value": 0}
        try:
            gas = await self._call("eth_estimateGas", lambda w3: w3.eth.estimate_gas(tx))
        except ContractLogicError as exc:
            return await self._refused(signed, evm_deploy.revert_data(exc))
        if self._chain_id is None:
            self._chain_id = await self._call("eth_chainId", lambda w3: w3.eth.chain_id)
        max_fee, tip = await self._fees()
        nonce, replaced = await self._nonce()
        if replaced is not None:  # must outbid the stuck one, or nodes refuse the replacement
            tip = max(tip, _bump(int(replaced.tx["maxPriorityFeePerGas"])))
            max_fee = max(max_fee, _bump(int(replaced.tx["maxFeePerGas"])), tip)
        tx.update(gas=int(gas * GAS_MULTIPLIER), chainId=self._chain_id, type=2, nonce=nonce,
                  maxPriorityFeePerGas=tip, maxFeePerGas=max_fee)
        flight = _InFlight(tx=dict(tx), hashes=[*(replaced.hashes if replaced else [])], sent_at=time.monotonic())
        flight.hashes.append(await self._send_raw(tx))
        self._in_flight = flight
        if replaced is not None:
            log.warning("feed update replaces an unmined one", target=self.name, feed=signed.feed_id,
                        round=signed.round, nonce=nonce, replaced=replaced.hashes[-1], tx=flight.hashes[-1])
        tx_hash, receipt = await self._wait_mined(signed, flight)
        self._in_flight = None
        if receipt["status"] != 1:
            # Mined but reverted: another update of this round got in between estimate and inclusion.
            try:
                await self._call("eth_call (replay)", lambda w3: w3.eth.call(
                    {k: tx[k] for k in ("from", "to", "data")}, block_identifier=receipt["blockNumber"]))
            except ContractLogicError as exc:
                return await self._refused(signed, evm_deploy.revert_data(exc))
            raise FeedPushError(f"{self.name}: update of {signed.feed_id} round {signed.round} reverted "
                                f"(tx {tx_hash}, gas used {receipt['gasUsed']})", retryable=True)
        self.last_receipt = receipt
        log.info("feed_pushed", target=self.name, feed=signed.feed_id, round=signed.round, tx=tx_hash,
                 gas=receipt["gasUsed"], replacements=len(flight.hashes) - 1 or None)
        return tx_hash

    async def _wait_mined(self, signed: SignedReport, flight: _InFlight) -> tuple[str, Any]:
        """(hash, receipt) of whichever of the flight's transactions is mined; re-sends with bumped
        fees every stuck_after_s. Raises a retryable FeedPushError after receipt_timeout_s (the
        flight stays recorded: the next push replaces it)."""
        deadline = time.monotonic() + self.receipt_timeout_s
        while True:
            # One call per poll: the account's mined count says when the nonce is used, and only
            # then is it worth asking which of the flight's transactions used it.
            if await self._count("latest") > int(flight.tx["nonce"]):
                for tx_hash in reversed(flight.hashes):
                    receipt = await self._receipt(tx_hash)
                    if receipt is not None:
                        return tx_hash, receipt
                self._in_flight = None
                raise FeedPushError(f"{self.name}: nonce {flight.tx['nonce']} was used by another transaction of "
                                    f"{self.account.address} (not this pusher's update); pushing again", retryable=True)
            now = time.monotonic()
            if now > deadline:
                raise FeedPushError(f"{self.name}: update of {signed.feed_id} round {signed.round} not mined within "
                                    f"{self.receipt_timeout_s:.0f}s (tx {flight.hashes[-1]}); the next push replaces it",
                                    retryable=True)
            if now - flight.sent_at >= self.stuck_after_s:
                fee_now, tip_now = await self._fees()
                flight.tx["maxPriorityFeePerGas"] = max(_bump(int(flight.tx["maxPriorityFeePerGas"])), tip_now)
                flight.tx["maxFeePerGas"] = max(_bump(int(flight.tx["maxFeePerGas"])), fee_now,
                                                flight.tx["maxPriorityFeePerGas"])
                flight.hashes.append(await self._send_raw(flight.tx))
                flight.sent_at = time.monotonic()
                log.warning("stuck feed update re-sent with bumped fees", target=self.name, feed=signed.feed_id,
                            round=signed.round, nonce=flight.tx["nonce"], tx=flight.hashes[-1],
                            max_fee=flight.tx["maxFeePerGas"])
            await asyncio.sleep(self.poll_interval_s)

    async def _refused(self, signed: SignedReport, data: str | None) -> FeedNotNewer:
        reason = evm_deploy.decode_revert(self._errors, data)
        if reason.startswith("StaleReport"):
            stored = await self.latest(signed.feed_id)
            return FeedNotNewer(self.name, signed.feed_id, signed.round, stored.round if stored else None)
        raise FeedPushError(f"{self.name}: FeedStore refused {signed.feed_id} round {signed.round}: {reason}; "
                            f"{_hint_for(reason)}", reason=reason, retryable=False)


def _hint_for(reason: str) -> str:
    if reason.startswith(("InvalidSignature", "Hint", "PairingFailed")):
        return "the report or its signature was altered, or another committee signed it"
    if reason.startswith("UnknownEpoch"):
        return "the chain's CommitteeVerifier does not know this epoch: rotate it first"
    if reason.startswith("EpochExpired"):
        return "the previous committee's grace period is over: push a report of the current epoch"
    if reason.startswith("UnknownFeed"):
        return "register the feed in the FeedStore (FeedStore.registerFeed) first"
    if reason.startswith("WrongDecimals"):
        return "the feed's decimals in the config differ from the registered ones: fix [feeds] or register a new id"
    return "the report will not be accepted as is"


# --- the evm_pool source ----------------------------------------------------------------------


class EvmPoolSource:
    """The price of a Uniswap-v2-style pool (`getReserves()`), read with eth_call at the head block.

    token0 is the base asset and token1 the quote (price = quote per base); `invert` swaps the roles
    (token1 is the base). `base_decimals` is always the base token's decimals. The quote is stamped
    with the head block's timestamp, so a chain that stopped producing blocks goes stale (max_age_s).
    """

    def __init__(self, config: EvmPoolSourceConfig, name: str, rpc_url: str, *, timeout_s: float = 2.0,
                 clock: Any = time.time) -> None:
        self.config = config
        self.name = name
        self.rpc_url = rpc_url
        self._clock = clock
        self._w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url, exception_retry_configuration=None,
                                               request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)}))

    async def close(self) -> None:
        await self._w3.provider.disconnect()

    async def fetch(self) -> Quote:
        cfg = self.config
        try:
            block = await self._w3.eth.get_block("latest")
            raw = bytes(await self._w3.eth.call({"to": to_checksum_address(cfg.pool), "data": GET_RESERVES},
                                                block_identifier=block["number"]))
        except ContractLogicError as exc:
            raise SourceError(f"pool {cfg.pool} on {cfg.chain}: getReserves() reverted ({exc}); is it a pool?") from None
        except Exception as exc:  # noqa: BLE001 - RPC down, timeouts, garbage answers
            raise SourceError(f"pool {cfg.pool} on {cfg.chain}: RPC {self.rpc_url} failed: "
                              f"{type(exc).__name__}: {exc}") from None
        if not raw:
            raise SourceError(f"pool {cfg.pool} on {cfg.chain}: no contract there (empty answer); check `pool`")
        if len(raw) < 96:
            raise SourceError(f"pool {cfg.pool} on {cfg.chain}: getReserves() returned {len(raw)} bytes, "
                              "expected 96; is it a Uniswap-v2-style pool?")
        reserve0, reserve1, _ = abi_decode(["uint256", "uint256", "uint256"], raw[:96])
        if reserve0 > _UINT112_MAX or reserve1 > _UINT112_MAX:
            raise SourceError(f"pool {cfg.pool} on {cfg.chain}: reserves do not fit uint112; not a v2 pool")
        if reserve0 == 0 or reserve1 == 0:
            raise SourceError(f"pool {cfg.pool} on {cfg.chain} has no liquidity (reserves {reserve0}, {reserve1})")
        base, quote = (reserve1, reserve0) if cfg.invert else (reserve0, reserve1)
        with localcontext() as ctx:
            ctx.prec = 40  # reserves hold up to 34 digits each; keep every one
            price = (Decimal(quote) / Decimal(10) ** cfg.quote_decimals) / (Decimal(base) / Decimal(10) ** cfg.base_decimals)
        return check_fresh(Quote(price, int(block["timestamp"]) * 1000), int(self._clock() * 1000), cfg.max_age_s)


def register_feed_sources(chains: "Mapping[str, EvmChain] | TesseraConfig") -> None:
    """Registers the `evm_pool` source kind for the given `[chains]` (or a whole config): call it
    once at attester start, before building the feeds' sources."""
    chains = getattr(chains, "chains", chains)
    evm = {name: chain for name, chain in chains.items() if getattr(chain, "kind", None) == "evm"}

    def factory(config: EvmPoolSourceConfig, name: str, clock: Any = time.time, **_: Any) -> EvmPoolSource:
        chain = evm.get(config.chain)
        if chain is None:
            raise SourceError(f"source {name}: chain {config.chain!r} is not an evm chain of this config; "
                              f"known: {', '.join(sorted(evm)) or 'none'}")
        return EvmPoolSource(config, name, chain.rpc_urls[0], clock=clock)

    register_source("evm_pool", factory)
