"""EVM transactions, one way for the whole package: the messaging adapter's deliveries, the task
board's calls, the feed pusher's updates and deployments all go through a `TxManager`.

- Nonces: one counter per account behind a lock, checked against the node's pending count before
  every send (a lagging endpoint may not list what we just sent; a nonce whose transactions the
  node lost is reused instead of leaving a gap forever).
- Fees: EIP-1559, `current_fees` (twice the base fee plus the node's tip), read at most once per
  `fee_ttl` seconds (about a block) however many transactions are prepared meanwhile: twice the base
  fee outlasts a block's +12.5 % many times over. Replacements always read fresh fees.
- Gas: `eth_estimateGas` × 1.2, or a limit the caller computed (`gas=`), then with `preflight=True`
  one `eth_call` at that limit so a refused call is still caught before anything is sent (one
  execution instead of the estimate's binary search of ~15); `access_list_gas` measures a call's gas
  with one execution (eth_createAccessList) for callers that compute their limit from it.
- Stuck transactions: re-sent with the same nonce and fees bumped by 12.5 % (`bump`, what geth-style
  mempools require of a replacement) after `stuck_after` seconds without a receipt; a later send may
  also take an unmined transaction's nonce (`send(..., replacing=...)`).
- Receipts: `check` tells one step (mined, waiting, replaced, nonce used by another transaction);
  `wait` repeats it until mined or a deadline. A receipt read is shared by the callers asking at once
  and, once mined, kept `receipt_ttl` seconds (a batch's messages ask about one transaction in waves):
  a receipt that old is one read that long ago, and whoever judges finality from it checks its block
  against the canonical chain. Every RPC goes through a `PoolCall` (rpc.py); receipts and eth_calls
  take rpc.py's lean path (no web3 formatters).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, Web3RPCError

from adapters.evm import rpc
from adapters.evm.rpc import Coalescer, PoolCall, revert_data, to_hex
from relay.envelope import keccak256
from relay.errors import TesseraError
from relay.log import get_logger

GAS_MULTIPLIER = 1.2  # over eth_estimateGas: state may change between the estimate and inclusion
FEE_BUMP_NUM, FEE_BUMP_DEN = 9, 8  # +12.5 %, what geth-style mempools require of a replacement
POLL_INTERVAL = 0.05  # seconds between checks while waiting for a transaction
NONCE_USED_GRACE = 2.0  # seconds `wait` looks for our receipt after the account's nonce was used
FEE_TTL = 1.0  # seconds fees read for one transaction serve the next ones
LOST_CHECK_S = 2.0  # a sent transaction not mined this long is looked for in the node (and sent again if lost)
RECEIPT_TTL = 1.0  # seconds a mined receipt serves the next callers asking about its transaction
RECEIPTS_KEPT = 4096  # bound of the mined receipts kept (oldest dropped first)


def _log() -> Any:
    return get_logger("evm.tx")


class TxError(TesseraError):
    """A transaction could not be sent or was not mined as expected."""


class NoSignerError(TxError):
    def __init__(self, chain: str) -> None:
        super().__init__(f"chain {chain}: sending transactions needs a signer key; set chains.{chain}.signer")


class TxNotMined(TxError):
    """Not mined within the time a caller waits; it may still be (the SentTx stays valid)."""

    def __init__(self, tx_hash: str, timeout: float) -> None:
        super().__init__(f"transaction {tx_hash} not mined within {timeout:.0f}s")
        self.tx_hash = tx_hash
        self.timeout = timeout


class NonceTaken(TxError):
    """The account's nonce of a transaction was used by a transaction that is none of its versions."""

    def __init__(self, nonce: int, address: str) -> None:
        super().__init__(f"nonce {nonce} of {address} was used by another transaction")
        self.nonce = nonce


def bump(value: int) -> int:
    """A fee raised enough for a replacement to be accepted (+12.5 %, rounded up)."""
    return value * FEE_BUMP_NUM // FEE_BUMP_DEN + 1


async def current_fees(call: PoolCall) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) for a transaction sent now, read through `call`."""
    block = await call("eth_getBlockByNumber(latest)", rpc.latest_fees_header)
    tip = await call("eth_maxPriorityFeePerGas", rpc.max_priority_fee)
    base = int(block.get("baseFeePerGas") or 0)
    # Twice the base fee survives six full blocks of +12.5 % before the transaction stalls.
    return 2 * base + tip, tip


async def send_signed(call: PoolCall, signer: LocalAccount, tx: dict[str, Any]) -> str:
    """Signs `tx` and sends it through `call`; returns its 0x-hex hash. A retry that meets our own
    transaction on another endpoint ("already known") counts as sent."""
    raw = signer.sign_transaction(tx).raw_transaction
    tx_hash = to_hex(keccak256(bytes(raw)))

    async def send(w3: AsyncWeb3) -> str:
        try:
            await rpc.send_raw_transaction(w3, raw)
        except Web3RPCError as exc:
            if "already known" not in str(exc).lower() and "already imported" not in str(exc).lower():
                raise
        return tx_hash

    return await call("eth_sendRawTransaction", send)


async def receipt_or_none(call: PoolCall, tx_hash: str) -> Any | None:
    """The transaction's receipt through `call`, or None while it is not mined (or unknown)."""
    return await call("eth_getTransactionReceipt", lambda w3: rpc.receipt(w3, tx_hash))


def _outbid(tx: dict[str, Any], fee_now: int, tip_now: int) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) that replace `tx`: both bumped, never under today's."""
    tip = max(bump(int(tx["maxPriorityFeePerGas"])), tip_now)
    return max(bump(int(tx["maxFeePerGas"])), fee_now, tip), tip


@dataclass(slots=True)
class SentTx:
    """A transaction we signed and every version of it sent since (same nonce, higher fees)."""

    tx: dict[str, Any]  # the newest version, as signed
    hashes: list[str]  # oldest first
    sent_at: float  # when the newest version was sent (monotonic)
    mined: str | None = None  # the version whose receipt was seen last
    looked_at: float = 0.0  # when the node was last asked whether it still has the newest version (monotonic)

    @property
    def nonce(self) -> int:
        return int(self.tx["nonce"])

    @property
    def original(self) -> str:
        return self.hashes[0]

    @property
    def latest(self) -> str:
        return self.hashes[-1]

    @property
    def replacements(self) -> list[str]:
        return self.hashes[1:]


# What one `check` saw.
@dataclass(frozen=True, slots=True)
class Mined:
    tx_hash: str
    receipt: Any


@dataclass(frozen=True, slots=True)
class Waiting:
    tx_hash: str
    waited: float


@dataclass(frozen=True, slots=True)
class Replaced:
    tx_hash: str  # the new version
    waited: float  # how long the previous one waited


@dataclass(frozen=True, slots=True)
class NonceUsed:
    nonce: int


Check = Mined | Waiting | Replaced | NonceUsed


@dataclass
class TxManager:
    """Sends, replaces and follows one account's transactions on one chain through `call`."""

    call: PoolCall
    account: LocalAccount | None
    name: str = "evm"
    chain_id: int | None = None
    poll_interval: float = POLL_INTERVAL
    fee_ttl: float = FEE_TTL
    receipt_ttl: float = RECEIPT_TTL
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _next_nonce: int | None = field(default=None, init=False, repr=False)
    # (when read, monotonic; the read): concurrent callers share one read in flight
    _fees: tuple[float, asyncio.Future[tuple[int, int]]] | None = field(default=None, init=False, repr=False)
    # Checks running at once share their reads: one mined count for every transaction followed, one
    # receipt per transaction however many messages it delivered, one check per transaction.
    _shared: Coalescer = field(default_factory=Coalescer, init=False, repr=False)
    # tx hash -> (when read, monotonic; its mined receipt)
    _receipts: dict[str, tuple[float, Any]] = field(default_factory=dict, init=False, repr=False)

    @property
    def signer(self) -> LocalAccount:
        if self.account is None:
            raise NoSignerError(self.name)
        return self.account

    async def fees(self) -> tuple[int, int]:
        """`current_fees`, shared for `fee_ttl` seconds (a failed read is not kept)."""
        now = time.monotonic()
        if self._fees is not None:
            read_at, future = self._fees
            failed = future.done() and (future.cancelled() or future.exception() is not None)
            if now - read_at < self.fee_ttl and not failed and future.get_loop() is asyncio.get_running_loop():
                return await asyncio.shield(future)
        future = asyncio.ensure_future(current_fees(self.call))
        self._fees = (now, future)
        return await asyncio.shield(future)

    async def wallet_balances(self) -> dict[str, int]:
        """{address: balance in wei} of the account this manager sends from; {} without one."""
        if self.account is None:
            return {}
        address = self.account.address
        return {address: await self.call("eth_getBalance", lambda w3: w3.eth.get_balance(address))}

    async def count(self, address: str, block: str) -> int:
        """eth_getTransactionCount at `block` ("latest": mined, "pending": with the mempool)."""
        return await self.call("eth_getTransactionCount", lambda w3: rpc.transaction_count(w3, address, block))

    async def receipt(self, tx_hash: str) -> Any | None:
        """The transaction's receipt (None while not mined): one read for the callers asking at once,
        a mined one kept `receipt_ttl` seconds."""
        kept = self._receipts.get(tx_hash)
        if kept is not None and time.monotonic() - kept[0] < self.receipt_ttl:
            return kept[1]
        return await self._shared.run(("receipt", tx_hash), lambda: self._read_receipt(tx_hash))

    async def _read_receipt(self, tx_hash: str) -> Any | None:
        read_at = time.monotonic()
        receipt = await receipt_or_none(self.call, tx_hash)
        self._receipts.pop(tx_hash, None)
        if receipt is not None and self.receipt_ttl > 0:
            if len(self._receipts) >= RECEIPTS_KEPT:
                self._receipts.pop(next(iter(self._receipts)))
            self._receipts[tx_hash] = (read_at, receipt)
        return receipt

    async def estimate(self, tx: dict[str, Any]) -> int:
        """eth_estimateGas; a refusal raises ContractLogicError (revert_data() has the reason)."""
        return await self.call("eth_estimateGas", lambda w3: rpc.estimate_gas(w3, tx))

    async def access_list_gas(self, to: str, data: str, gas: int) -> int:
        """The gas one execution of this account's call uses with at most `gas` (eth_createAccessList:
        one execution, not eth_estimateGas's search). A revert raises ContractLogicError; a node
        without the method Web3RPCError."""
        tx = {"from": self.signer.address, "to": to, "data": data, "gas": gas}
        return await self.call("eth_createAccessList", lambda w3: rpc.create_access_list_gas(w3, tx))

    async def block_gas_limit(self) -> int:
        """The latest block's gas limit."""
        return await self.call("eth_getBlockByNumber (gas limit)", rpc.block_gas_limit)

    async def transaction(self, to: str | None, data: str, value: int = 0, *, gas: int | None = None,
                          preflight: bool = False) -> dict[str, Any]:
        """A type-2 transaction ready to `send`: gas estimated (× GAS_MULTIPLIER) unless given, fees
        of now. `to=None` creates a contract. Estimating a call the chain refuses raises
        ContractLogicError: nothing is sent; with a given `gas` and `preflight`, one eth_call at that
        limit does the same. The gas and the fees are read concurrently."""
        tx: dict[str, Any] = {"from": self.signer.address, "data": data, "value": value}
        if to is not None:
            tx["to"] = to

        async def gas_limit() -> int:
            if gas is None:
                return int(await self.estimate(dict(tx)) * GAS_MULTIPLIER)
            if preflight:
                await self.call("eth_call (preflight)", lambda w3: rpc.eth_call(w3, {**tx, "gas": gas}))
            return gas

        limit, fees = await asyncio.gather(gas_limit(), self.fees(), return_exceptions=True)
        for outcome in (limit, fees):  # the gas step's refusal first: it is what callers decode
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(limit, int) and isinstance(fees, tuple)
        if self.chain_id is None:
            self.chain_id = await self.call("eth_chainId", lambda w3: w3.eth.chain_id)
        max_fee, tip = fees
        tx.update(gas=limit, chainId=self.chain_id, type=2, maxFeePerGas=max_fee, maxPriorityFeePerGas=tip)
        return tx

    async def _resync_nonce(self, address: str) -> int:
        """The nonce for our next transaction. The node's pending count is the truth, except that a
        lagging endpoint may not list what we just sent: keep our own counter then. If the node has
        nothing of ours in flight (pending == mined) but we counted further, those transactions were
        lost (a reorg, a dropped mempool): reuse their nonces instead of leaving a gap forever."""
        pending = await self.count(address, "pending")
        local = self._next_nonce
        if local is None or pending >= local:
            return pending
        if await self.count(address, "latest") == pending:
            _log().warning("nonce gap healed", chain=self.name, local=local, node=pending)
            return pending
        return local

    async def send(self, tx: dict[str, Any], *, replacing: SentTx | None = None) -> SentTx:
        """Signs and sends `tx` with the account's next nonce, one send at a time so nonces never
        collide. With `replacing` (an earlier transaction not known to be mined), `tx` takes its
        nonce instead, outbidding its fees, and the result lists the earlier versions first."""
        signer = self.signer
        tx = dict(tx)
        async with self._lock:
            if replacing is not None and not await self.nonce_used(replacing.nonce):
                tx["nonce"] = replacing.nonce
                tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = _outbid(
                    replacing.tx, int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"]))
                tx_hash = await send_signed(self.call, signer, tx)
                _log().warning("unmined transaction replaced by a new one", chain=self.name, nonce=tx["nonce"],
                               replaced=replacing.latest, tx=tx_hash)
                return SentTx(tx=tx, hashes=[*replacing.hashes, tx_hash], sent_at=time.monotonic())
            self._next_nonce = await self._resync_nonce(signer.address)
            tx["nonce"] = self._next_nonce
            try:
                tx_hash = await send_signed(self.call, signer, tx)
            except Exception:
                # The node's view wins after any failure (a nonce used elsewhere, a restart, ...).
                self._next_nonce = None
                raise
            self._next_nonce += 1
        return SentTx(tx=tx, hashes=[tx_hash], sent_at=time.monotonic())

    async def replace(self, sent: SentTx) -> str:
        """Re-sends `sent` with the same nonce and bumped fees (it takes the old version's place);
        records and returns the new hash."""
        tx = dict(sent.tx)
        tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = _outbid(tx, *await current_fees(self.call))
        async with self._lock:
            tx_hash = await send_signed(self.call, self.signer, tx)
        waited = time.monotonic() - sent.sent_at
        sent.tx, sent.sent_at = tx, time.monotonic()
        sent.hashes.append(tx_hash)
        _log().warning("stuck transaction re-sent with bumped fees", chain=self.name, original=sent.original,
                       replacement=tx_hash, nonce=tx["nonce"], max_fee=tx["maxFeePerGas"],
                       tip=tx["maxPriorityFeePerGas"], waited_s=round(waited, 1))
        return tx_hash

    async def nonce_used(self, nonce: int) -> bool:
        return await self.count(self.signer.address, "latest") > nonce

    async def check(self, sent: SentTx, stuck_after: float | None = None) -> Check:
        """One look at `sent`: mined (which version, its receipt), nonce used by another
        transaction, or waiting — re-sent with bumped fees first when it has waited `stuck_after`
        seconds. One RPC while nothing is mined (the account's mined count, shared by the checks
        running at once); receipts only once the nonce is used, and then only the mined version's.
        Checks of the same transaction running at once are one check (one replacement, not many)."""
        return await self._shared.run(("check", id(sent), stuck_after), lambda: self._check(sent, stuck_after))

    async def _check(self, sent: SentTx, stuck_after: float | None) -> Check:
        if sent.mined is not None:
            receipt = await self.receipt(sent.mined)
            if receipt is not None:
                return Mined(sent.mined, receipt)
            sent.mined = None  # reorged out: look again
        mined_count = await self._shared.run(("mined count", self.signer.address),
                                             lambda: self.count(self.signer.address, "latest"))
        if mined_count > sent.nonce:
            for tx_hash in reversed(sent.hashes):
                receipt = await self.receipt(tx_hash)
                if receipt is not None:
                    sent.mined = tx_hash
                    return Mined(tx_hash, receipt)
            return NonceUsed(sent.nonce)
        waited = time.monotonic() - sent.sent_at
        if stuck_after is not None and waited >= stuck_after:
            return Replaced(await self.replace(sent), waited)
        if waited >= LOST_CHECK_S and time.monotonic() - sent.looked_at >= LOST_CHECK_S:
            await self._resend_if_lost(sent)
        return Waiting(sent.latest, waited)

    async def _resend_if_lost(self, sent: SentTx) -> None:
        """A node may drop a transaction it accepted (anvil loses some that arrive while it mines a
        block: foundry-rs/foundry#10122; a real node's mempool evicts): the same signed bytes are sent
        again when the node no longer knows the newest version, instead of waiting `stuck_after`."""
        sent.looked_at = time.monotonic()
        try:
            if await self.call("eth_getTransactionByHash", lambda w3: rpc.transaction_known(w3, sent.latest)):
                return
            tx_hash = await send_signed(self.call, self.signer, sent.tx)
        except Exception as exc:  # noqa: BLE001 - e.g. mined meanwhile (nonce too low): the next check sees it
            _log().info("lost transaction not sent again", chain=self.name, tx=sent.latest, nonce=sent.nonce,
                        error=f"{type(exc).__name__}: {exc}"[:300])
            return
        _log().warning("the node lost a sent transaction: sent it again", chain=self.name, tx=tx_hash,
                       nonce=sent.nonce, waited_s=round(time.monotonic() - sent.sent_at, 1))

    async def wait(self, sent: SentTx, timeout: float, *, stuck_after: float | None = None) -> Mined:
        """Checks `sent` until a version is mined. Raises TxNotMined after `timeout` seconds,
        NonceTaken when another transaction used its nonce."""
        deadline = time.monotonic() + timeout
        unseen_since: float | None = None
        while True:
            outcome = await self.check(sent, stuck_after)
            if isinstance(outcome, Mined):
                return outcome
            if isinstance(outcome, NonceUsed):
                # A node may count a mined transaction before it serves the receipt (seen on anvil):
                # only a nonce used for a while with none of our receipts is another transaction.
                unseen_since = unseen_since if unseen_since is not None else time.monotonic()
                if time.monotonic() - unseen_since > NONCE_USED_GRACE:
                    raise NonceTaken(outcome.nonce, self.signer.address)
            if time.monotonic() > deadline:
                raise TxNotMined(sent.latest, timeout)
            await asyncio.sleep(self.poll_interval)

    async def replay(self, tx: dict[str, Any], block: int) -> tuple[bool, str | None]:
        """Re-runs a mined transaction's call on the state at the end of `block` (receipts carry no
        revert data): (True, revert data) when it reverts there, (False, None) when it does not. A
        reverted transaction changed nothing, so a call that lost a race to one earlier in its block
        then reads as what beat it."""
        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        try:
            await self.call("eth_call (replay)", lambda w3: rpc.eth_call(w3, call, block))
        except ContractLogicError as exc:
            return True, revert_data(exc)
        return False, None
