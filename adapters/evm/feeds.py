"""Feeds on an EVM chain: deploying FeedStore + one TesseraAggregator per feed, pushing signed
reports (`EvmFeedTarget`, the pusher's EVM target) and the `evm_pool` price source.

Contracts: contracts/evm/src/feeds/ (docs/FEEDS.md "On-chain: EVM").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal, localcontext
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from adapters.evm.deploy import contract, deploy, error_abi, load_artifact, transact
from adapters.evm.gateway import evm_key
from attest.bn254 import hash_to_g1_hint
from adapters.evm import rpc
from adapters.evm.rpc import decode_revert, endpoint_pool, given_client_pool, make_client, revert_data
from adapters.evm.tx import NonceTaken, SentTx, TxManager, TxNotMined
from relay.config import EvmChain, KeyRef, TesseraConfig
from relay.errors import ConfigError
from relay.feeds.config import EvmPoolSourceConfig, FeedConfig
from relay.feeds.multi import SignedFeedRoot
from relay.feeds.report import FeedError, FeedReport, encode_feed_id
from relay.feeds.signed import SignedReport
from relay.feeds.sources import Quote, SourceError, check_fresh, register_source
from relay.interfaces import EndpointHealth, FeedNotNewer
from relay.log import get_logger

log = get_logger("evm.feeds")

FEED_STORE = "FeedStore"
AGGREGATOR = "TesseraAggregator"
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
    store_address = await deploy(w3, signer, FEED_STORE, to_checksum_address(verifier), owner or signer.address)
    store = contract(w3, FEED_STORE, store_address)
    contracts = {FEED_STORE: store_address}
    for feed_id, feed in feeds.items():
        fid = encode_feed_id(feed_id)
        if owner is not None and owner != signer.address:
            raise EvmFeedError("register the feeds before handing the FeedStore to another owner: deploy with owner=None")
        await transact(w3, signer, store.functions.registerFeed(fid, feed.decimals, feed.description))
        contracts[aggregator_key(feed_id)] = await deploy(w3, signer, AGGREGATOR, store_address, fid)
    log.info("feed contracts deployed", **contracts)
    return contracts


def hinted_update_args(signed: SignedReport) -> tuple[bytes, int, bytes, int, int, int]:
    """(report, epoch, signature, k, y, ySqrt): the arguments of FeedStore.updateWithHint /
    tryUpdateWithHint and PullConsumer.settle, for a pull consumer building its own transaction."""
    k, y, y_sqrt = hash_to_g1_hint(signed.digest)
    return signed.report.encode(), signed.epoch, signed.signature, k, y, y_sqrt


def update_feeds_args(signed: SignedFeedRoot, feed_ids: Sequence[str] | None = None, *,
                      hinted: bool = True) -> tuple[tuple, list[bytes], list[int], list[list[bytes]]]:
    """(rootSignature, reports, indices, proofs): the arguments of FeedStore.updateFeeds for a
    committee-signed feed root (relay/feeds/multi.py). Without `feed_ids`: every report in leaf
    order, no proofs (the contract recomputes the root; cheapest when all feeds are pushed). With
    them: those reports, each with its leaf index and Merkle proof. `hinted` adds the hash-to-curve
    hint of the root's digest (no modexp on-chain); without it y = 0 means "no hint"."""
    k, y, y_sqrt = hash_to_g1_hint(signed.digest) if hinted else (0, 0, 0)
    root = signed.root
    sig = (root.root, root.leaf_count, signed.epoch, bytes(signed.signature), k, y, y_sqrt)
    if feed_ids is None:
        return sig, [r.encode() for r in root.reports], [], []
    indices = [root.index_of(f) for f in feed_ids]
    return sig, [root.reports[i].encode() for i in indices], indices, [root.proof(i) for i in indices]


def update_feeds_data(store: Any, signed: SignedFeedRoot, feed_ids: Sequence[str] | None = None, *,
                      hinted: bool = True) -> str:
    """Calldata of FeedStore.updateFeeds (`store`: a web3 contract object with the FeedStore ABI)."""
    return store.functions.updateFeeds(*update_feeds_args(signed, feed_ids, hinted=hinted))._encode_transaction_data()


def served_update_args(reports: Sequence[SignedReport], *,
                       hinted: bool = True) -> tuple[tuple, list[bytes], list[int], list[list[bytes]]]:
    """updateFeeds arguments from served (v2) reports of one feed root, each carrying its proof:
    every leaf in order without proofs when all of them are given (cheapest), else each with its
    index and proof. Raises FeedError for a v1 report or reports of different roots."""
    root_keys = {r.root_key for r in reports}
    if not reports or None in root_keys or len(root_keys) != 1:
        raise FeedError("updateFeeds takes reports of one feed root (version 2, the same epoch, root and signature); "
                        "push a v1 report with push()")
    first = reports[0]
    k, y, y_sqrt = hash_to_g1_hint(first.digest) if hinted else (0, 0, 0)
    sig = (first.root_hash, first.root.leaf_count, first.epoch, bytes(first.signature), k, y, y_sqrt)
    ordered = sorted(reports, key=lambda r: r.root.index)
    if [r.root.index for r in ordered] == list(range(first.root.leaf_count)):
        return sig, [r.report.encode() for r in ordered], [], []
    return (sig, [r.report.encode() for r in ordered], [r.root.index for r in ordered],
            [list(r.root.proof) for r in ordered])


# --- the push target ------------------------------------------------------------------------------


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
        self._owns_clients = not isinstance(endpoints, AsyncWeb3)  # a given provider is the caller's to close
        self.pool = (given_client_pool(name, endpoints, timeout=rpc_timeout_s) if isinstance(endpoints, AsyncWeb3)
                     else endpoint_pool(name, endpoints, timeout=rpc_timeout_s))
        self.account = Account.from_key(account) if isinstance(account, str) else account
        self.tx = TxManager(self._call, self.account, name=name, poll_interval=poll_interval_s)
        self.store_address = to_checksum_address(store_address)
        # Offline: encodes calls and decodes results; every call goes out through the pool.
        abi = load_artifact(FEED_STORE).abi
        self._store = AsyncWeb3().eth.contract(address=self.store_address, abi=abi)
        self.name = name
        self.receipt_timeout_s = receipt_timeout_s
        self.stuck_after_s = stuck_after_s
        self._lock = asyncio.Lock()
        self._errors = error_abi(FEED_STORE, "CommitteeVerifier")
        self._in_flight: SentTx | None = None  # an update not known to be mined: the next push replaces it
        self.last_receipt: Any = None  # of the last successful push (the benchmark reads its gas)

    @classmethod
    def from_config(cls, name: str, chain: EvmChain, key: KeyRef | None = None, **options: Any) -> "EvmFeedTarget":
        """The target for `[chains.<name>]` (its contracts hold `FeedStore`). `key` is the pusher's
        own account; without one the chain's `sender`."""
        store = chain.contracts.get(FEED_STORE)
        if store is None:
            raise ConfigError(f"chains.{name}.contracts has no FeedStore: deploy the feed contracts "
                              "(`relay localnet up` does) and add its address")
        ref = key or chain.sender
        if ref is None:
            raise ConfigError(f"no key to pay for feed updates on {name}: set [feed_push] evm_key")
        try:
            account = Account.from_key(evm_key(ref, f"the feed pusher's key on {name}"))
        except ValueError:
            raise ConfigError(f"{ref.describe()} does not hold a 0x-hex secp256k1 private key") from None
        options.setdefault("name", name)
        return cls(chain.rpc_urls, account, store, **options)

    async def close(self) -> None:
        if self._owns_clients:
            for client in self.pool.clients:
                await client.provider.disconnect()

    async def __aenter__(self) -> "EvmFeedTarget":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wallet_balances(self) -> dict[str, int]:
        return await self.tx.wallet_balances()

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
        raw = await self._call("eth_call", lambda w3: rpc.eth_call(w3, {"to": self.store_address, "data": data}, block))
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
        if signed.root is not None:  # signed as a leaf of a feed root (v2): only the root update takes it
            return (await self.push_root([signed]))[signed.feed_id]
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

    async def push_root(self, reports: Sequence[SignedReport],
                        riders: Sequence[SignedReport] = ()) -> dict[str, str | FeedNotNewer]:
        """Several feeds of one committee-signed feed root in ONE FeedStore.updateFeeds transaction.
        `riders` are ignored on EVM: storing a round costs more gas than a proof saves.
        Feeds whose report is not newer than the stored round are left out beforehand (and the
        store skips any that became stale meanwhile instead of reverting); they come back as
        FeedNotNewer, the others with the transaction hash. Nothing newer: no transaction."""
        async with self._lock:
            try:
                stored = {r.feed_id: await self.latest(r.feed_id) for r in reports}
                fresh, results = FeedNotNewer.split(self.name, reports, stored)
                if not fresh:
                    return results
                call = self._store.functions.updateFeeds(*served_update_args(fresh))
                what = f"{len(fresh)} feeds ({', '.join(r.feed_id for r in fresh)}) round {fresh[0].round}"
                outcome = await self._send(fresh[0], call, what=what)
            except EvmFeedError:
                raise
            except FeedError as exc:
                raise FeedPushError(f"{self.name}: {exc}", retryable=False) from None
            except Exception as exc:  # noqa: BLE001 - transport trouble: worth a retry
                raise FeedPushError(f"{self.name}: pushing a feed root failed: {exc!r}; check chains.{self.name}."
                                    "rpc_urls and retry", retryable=True) from exc
        for r in fresh:
            results[r.feed_id] = outcome if isinstance(outcome, str) else \
                FeedNotNewer(self.name, r.feed_id, r.round, getattr(outcome, "stored_round", None))
        return results

    async def _send(self, signed: SignedReport, call: Any, what: str | None = None) -> str | FeedNotNewer:
        what = what or f"{signed.feed_id} round {signed.round}"
        data = call._encode_transaction_data()
        try:
            tx = await self.tx.transaction(self.store_address, data)
        except ContractLogicError as exc:
            return await self._refused(signed, revert_data(exc))
        flight = await self.tx.send(tx, replacing=self._in_flight)
        self._in_flight = flight
        try:
            mined = await self.tx.wait(flight, self.receipt_timeout_s, stuck_after=self.stuck_after_s)
        except TxNotMined:
            raise FeedPushError(f"{self.name}: update of {what} not mined within "
                                f"{self.receipt_timeout_s:.0f}s (tx {flight.latest}); the next push replaces it",
                                retryable=True) from None
        except NonceTaken:
            self._in_flight = None
            raise FeedPushError(f"{self.name}: nonce {flight.nonce} was used by another transaction of "
                                f"{self.account.address} (not this pusher's update); pushing again",
                                retryable=True) from None
        self._in_flight = None
        tx_hash, receipt = mined.tx_hash, mined.receipt
        if receipt["status"] != 1:
            # Mined but reverted: another update of this round got in between estimate and inclusion.
            reverted, revert = await self.tx.replay({k: tx[k] for k in ("from", "to", "data")},
                                                    int(receipt["blockNumber"]))
            if reverted:
                return await self._refused(signed, revert)
            raise FeedPushError(f"{self.name}: update of {what} reverted "
                                f"(tx {tx_hash}, gas used {receipt['gasUsed']})", retryable=True)
        self.last_receipt = receipt
        log.info("feed_pushed", target=self.name, feed=signed.feed_id, round=signed.round, update=what, tx=tx_hash,
                 gas=receipt["gasUsed"], replacements=len(flight.replacements) or None)
        return tx_hash

    async def _refused(self, signed: SignedReport, data: str | None) -> FeedNotNewer:
        reason = decode_revert(self._errors, data)
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
        self._w3 = make_client(rpc_url, timeout_s)

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

