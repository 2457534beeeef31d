"""The EVM chain adapter: Tessera's Gateway contract seen through web3.py.

Watching: only `MessageSent` events in final blocks leave this module (final = at least
`confirmations` blocks under the head, or at/below the node's `finalized` tag when confirmations is
None), so a reorg shallower than the finality depth never reaches the attesters or the relayer.
Delivering: `deliverWithHint(envelope, epoch, signature, k, y, y_sqrt)` transactions (`deliver` with
the hash-to-curve point computed here, see `hash_to_g1_hint`) signed locally, one account nonce
counter behind a lock, EIP-1559 fees from the node, and stuck transactions re-sent with the same
nonce and bumped fees. Every RPC goes through an EndpointPool (failover, retries on endpoint
errors, never on reverts).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3, WebSocketProvider
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TooManyRequests,
    TransactionNotFound,
    Web3RPCError,
)

from adapters.evm import deploy as evm_deploy
from adapters.endpoints import AllEndpointsFailed, EndpointPool
from attest import hash_to_g1
from attest.bn254 import P as BN254_P
from relay.interfaces import DeliveryState, DeliveryStatus, EndpointHealth, Observation, SignedDelivery
from relay.config import EvmChain, KeyRef
from relay.envelope import Envelope, keccak256, message_digest
from relay.errors import ConfigError, TesseraError
from relay.log import get_logger

T = TypeVar("T")

GATEWAY = "Gateway"
LOG_RANGE = 2_000  # blocks per eth_getLogs: public nodes cap ranges (and result sizes)
POLL_INTERVAL = 0.5  # seconds between head polls when no WS subscription wakes the watcher
GAS_MULTIPLIER = 1.2
FEE_BUMP_NUM, FEE_BUMP_DEN = 9, 8  # +12.5 %, what geth-style mempools require of a replacement
STUCK_AFTER = 30.0  # seconds without a receipt before a delivery is re-sent with bumped fees

STATUS_NONE, STATUS_HANDLED, STATUS_FAILED = 0, 1, 2


def _log() -> Any:
    return get_logger("evm")


# --- errors ---------------------------------------------------------------------------------


class EvmAdapterError(TesseraError):
    """The EVM adapter could not do what was asked; the message says why and what to do."""


class GatewayNotConfigured(EvmAdapterError):
    def __init__(self, chain: str) -> None:
        super().__init__(
            f"chains.{chain}.contracts has no Gateway address: deploy it (`relay localnet up` does) "
            "and add `Gateway = \"0x…\"` under [chains.{chain}.contracts]"
        )


class NoSignerError(EvmAdapterError):
    def __init__(self, chain: str) -> None:
        super().__init__(f"chain {chain}: sending transactions needs a signer key; set chains.{chain}.signer")


class DeliveryRejected(EvmAdapterError):
    """The gateway refuses the delivery (seen when estimating gas); nothing was sent."""

    def __init__(self, message_id: bytes, reason: str) -> None:
        super().__init__(f"gateway refuses message 0x{message_id.hex()}: {reason}")
        self.message_id = message_id
        self.reason = reason


class AlreadyDeliveredError(DeliveryRejected):
    """The gateway has already accepted this message id (another relayer, or an earlier attempt)."""


class SendRejected(EvmAdapterError):
    """`Gateway.send` would revert; the reason is the decoded custom error."""


# --- helpers --------------------------------------------------------------------------------


def evm_key(ref: KeyRef | None, where: str) -> str | None:
    """The 0x-hex private key a KeyRef points at, checked; None without a ref."""
    if ref is None:
        return None
    key = ref.read_text()
    key = key if key.startswith("0x") else "0x" + key
    if len(key) != 66:
        raise ConfigError(f"{where} ({ref.describe()}) must hold a 32-byte hex private key")
    return key


def is_retryable(exc: BaseException) -> bool:
    """Endpoint trouble (worth another endpoint or a later try), as opposed to a request the chain
    refuses (a revert, a bad transaction), which no retry fixes."""
    if isinstance(exc, ContractLogicError):
        return False
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status == 429 or exc.status >= 500
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ProviderConnectionError,
                        TooManyRequests, TimeoutError)):
        return True
    return isinstance(exc, OSError)


def _make_client(url: str, timeout: float) -> AsyncWeb3:
    # web3's own retries are off: the pool decides, and fails over instead of hammering one node.
    provider = AsyncHTTPProvider(
        url, exception_retry_configuration=None, request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}
    )
    return AsyncWeb3(provider)


PoolCall = Callable[[str, Callable[[AsyncWeb3], Awaitable[Any]]], Awaitable[Any]]


async def send_signed(call: PoolCall, signer: LocalAccount, tx: dict[str, Any]) -> str:
    """Signs `tx` and sends it through `call` (an endpoint pool's call); returns its 0x-hex hash.
    A retry that meets our own transaction on another endpoint ("already known") counts as sent."""
    raw = signer.sign_transaction(tx).raw_transaction
    tx_hash = _hex(keccak256(bytes(raw)))

    async def send(w3: AsyncWeb3) -> str:
        try:
            await w3.eth.send_raw_transaction(raw)
        except Web3RPCError as exc:
            if "already known" not in str(exc).lower() and "already imported" not in str(exc).lower():
                raise
        return tx_hash

    return await call("eth_sendRawTransaction", send)


async def current_fees(call: PoolCall) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) for a transaction sent now, read through `call`."""
    block = await call("eth_getBlockByNumber(latest)", lambda w3: w3.eth.get_block("latest"))
    tip = await call("eth_maxPriorityFeePerGas", lambda w3: w3.eth.max_priority_fee)
    base = int(block.get("baseFeePerGas") or 0)
    # Twice the base fee survives six full blocks of +12.5 % before the transaction stalls.
    return 2 * base + tip, tip


async def receipt_or_none(call: PoolCall, tx_hash: str) -> Any | None:
    """The transaction's receipt through `call`, or None while it is not mined (or unknown)."""
    async def get(w3: AsyncWeb3) -> Any | None:
        try:
            return await w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    return await call("eth_getTransactionReceipt", get)


def _hex(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def _topic_int(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


@dataclass(slots=True)
class _SentTx:
    """A delivery we signed: enough to re-send it with the same nonce and higher fees."""

    tx: dict[str, Any]
    sent_at: float
    message_id: bytes
    replacements: list[str] = field(default_factory=list)  # newest last


# --- the adapter ----------------------------------------------------------------------------


class EvmAdapter:
    def __init__(
        self,
        name: str,
        chain: EvmChain,
        signer_private_key: str | None,
        *,
        start_block: int = 0,
        poll_interval: float = POLL_INTERVAL,
        stuck_after: float = STUCK_AFTER,
        log_range: int = LOG_RANGE,
        rpc_timeout: float = 10.0,
        pool_attempts: int = 4,
    ) -> None:
        self.name = name
        self.chain = chain
        self.domain = chain.domain
        self.confirmations = chain.confirmations
        address = chain.contracts.get(GATEWAY)
        if address is None:
            raise GatewayNotConfigured(name)
        self.gateway_address = to_checksum_address(address)
        self.start_block = start_block
        self.poll_interval = poll_interval
        self.stuck_after = stuck_after
        self.log_range = log_range
        self.pool: EndpointPool[AsyncWeb3] = EndpointPool(
            name, chain.rpc_urls, lambda url: _make_client(url, rpc_timeout), is_retryable,
            attempts=pool_attempts, timeout=rpc_timeout,
        )
        self.account: LocalAccount | None = Account.from_key(signer_private_key) if signer_private_key else None

        artifact = evm_deploy.load_artifact(GATEWAY)
        self.abi = artifact.abi
        # An offline contract object: encodes calls and decodes events without an endpoint.
        self._gateway = AsyncWeb3().eth.contract(address=self.gateway_address, abi=self.abi)
        events = {e["name"]: e for e in self.abi if e.get("type") == "event"}
        self._topic_sent = _hex(event_abi_to_log_topic(events["MessageSent"]))
        self._topic_delivered = _hex(event_abi_to_log_topic(events["MessageDelivered"]))

        self._tx_lock = asyncio.Lock()
        self._next_nonce: int | None = None
        self._sent: dict[str, _SentTx] = {}
        self._replaced_by: dict[str, str] = {}  # replacement hash → the original it stands for
        self._wake = asyncio.Event()
        self.head_subscription = asyncio.Event()  # set while a newHeads subscription is live
        self._ws_task: asyncio.Task[None] | None = None
        self._chain_id: int | None = None
        self._block_times: dict[int, int] = {}  # final block number -> timestamp (bounded)

    @classmethod
    def from_config(cls, name: str, chain: EvmChain, **options: Any) -> "EvmAdapter":
        """Reads the signer key the config points at (file or env variable); watch-only without one."""
        key = chain.signer.read_text() if chain.signer is not None else None
        return cls(name, chain, key, **options)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        chain_id = await self._call("eth_chainId", lambda w3: w3.eth.chain_id)
        if chain_id != self.chain.chain_id:
            raise EvmAdapterError(
                f"chain {self.name}: the node reports chain id {chain_id}, the config says {self.chain.chain_id}; "
                "point rpc_urls at the right network"
            )
        self._chain_id = chain_id
        code = await self._call("eth_getCode", lambda w3: w3.eth.get_code(self.gateway_address))
        if not code:
            raise EvmAdapterError(
                f"chain {self.name}: no contract at Gateway address {self.gateway_address}; deploy it or fix the config"
            )

    async def close(self) -> None:
        if self._ws_task is not None:
            self._ws_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ws_task
            self._ws_task = None
        for client in self.pool.clients:
            with contextlib.suppress(Exception):
                await client.provider.disconnect()

    def health(self) -> list[EndpointHealth]:
        return self.pool.health()

    async def _call(self, what: str, fn: Callable[[AsyncWeb3], Awaitable[T]]) -> T:
        return await self.pool.call(what, fn)

    # --- finality ----------------------------------------------------------------------------

    async def final_block(self) -> int:
        """Highest block number considered final now (-1 when none is)."""
        if self.confirmations is None:
            block = await self._call("eth_getBlockByNumber(finalized)", lambda w3: w3.eth.get_block("finalized"))
            return int(block["number"])
        head = await self._call("eth_blockNumber", lambda w3: w3.eth.block_number)
        return head - self.confirmations

    async def _canonical_hash(self, number: int) -> bytes | None:
        try:
            block = await self._call("eth_getBlockByNumber", lambda w3: w3.eth.get_block(number))
        except Web3RPCError:  # BlockNotFound: the chain got shorter
            return None
        return bytes(block["hash"])

    # --- watching ----------------------------------------------------------------------------

    def _observation(self, entry: Any, cursor: str) -> Observation | None:
        topics = [bytes(t) for t in entry["topics"]]
        tx = _hex(entry["transactionHash"])
        where = {"chain": self.name, "tx": tx, "block": entry["blockNumber"], "log_index": entry["logIndex"]}
        if len(topics) != 4 or _hex(topics[0]) != self._topic_sent:
            _log().warning("skipping log that is not a MessageSent", **where)
            return None
        try:
            (raw,) = abi_decode(["bytes"], bytes(entry["data"]))
            envelope = Envelope.decode(raw)
        except Exception as exc:  # noqa: BLE001 - any malformed event is skipped, loudly
            _log().error("skipping MessageSent with an undecodable envelope", error=str(exc), **where)
            return None
        problems = []
        if keccak256(raw) != topics[1]:
            problems.append("keccak256(envelope) differs from the indexed messageId")
        if envelope.src_domain != self.domain:
            problems.append(f"src_domain {envelope.src_domain} is not this chain's domain {self.domain}")
        if envelope.nonce != int.from_bytes(topics[2], "big"):
            problems.append(f"nonce {envelope.nonce} differs from the indexed nonce {int.from_bytes(topics[2], 'big')}")
        if envelope.dst_domain != int.from_bytes(topics[3], "big"):
            problems.append("dst_domain differs from the indexed dstDomain")
        if problems:
            _log().error("skipping MessageSent that fails its checks", problems=problems, **where)
            return None
        return Observation(envelope=envelope, source_tx=tx, position=int(entry["blockNumber"]), cursor=cursor)

    async def _get_logs(self, from_block: int, to_block: int, topics: list[str | None]) -> list[Any]:
        params = {"address": self.gateway_address, "fromBlock": from_block, "toBlock": to_block, "topics": topics}
        logs = await self._call("eth_getLogs", lambda w3: w3.eth.get_logs(params))
        return sorted((e for e in logs if not e.get("removed")), key=lambda e: (e["blockNumber"], e["logIndex"]))

    async def _block_time(self, number: int) -> int | None:
        # Final blocks do not change, so their timestamps are cached (bounded: the newest 1,024).
        cache = self._block_times
        if number not in cache:
            try:
                block = await self._call("eth_getBlockByNumber", lambda w3: w3.eth.get_block(number))
            except Web3RPCError:
                return None
            if len(cache) >= 1024:
                cache.pop(next(iter(cache)))
            cache[number] = int(block["timestamp"])
        return cache[number]

    async def _timed(self, observations: list[Observation]) -> list[Observation]:
        """The observations with block_time filled in (PROOF_ATTESTATION's checked_at comes from it)."""
        return [replace(o, block_time=await self._block_time(o.position)) for o in observations]

    def _observations(self, logs: list[Any]) -> list[Observation]:
        out = []
        for i, entry in enumerate(logs):
            block = int(entry["blockNumber"])
            last_in_block = i + 1 == len(logs) or int(logs[i + 1]["blockNumber"]) != block
            # A cursor saved mid-block resumes at that block again: a repeat, never a gap.
            observation = self._observation(entry, str(block if last_in_block else block - 1))
            if observation is not None:
                out.append(observation)
        return out

    async def watch(self, cursor: str | None) -> AsyncIterator[Observation]:
        next_block = int(cursor) + 1 if cursor is not None else self.start_block
        self._ensure_head_subscription()
        outage = 0
        while True:
            # Cleared before the pass, not after: a head announced during the pass must wake the next one.
            self._wake.clear()
            try:
                final = await self.final_block()
                while next_block <= final:
                    to_block = min(final, next_block + self.log_range - 1)
                    logs = await self._get_logs(next_block, to_block, [self._topic_sent])
                    for observation in await self._timed(self._observations(logs)):
                        yield observation
                    next_block = to_block + 1
                outage = 0
            except AllEndpointsFailed as exc:
                # A watcher outlives node outages: it resumes from the first block it has not finished.
                outage += 1
                _log().error("watch paused: no endpoint answers", chain=self.name, next_block=next_block,
                             error=str(exc), retry_in_s=min(30.0, self.poll_interval * 2**outage))
                await asyncio.sleep(min(30.0, self.poll_interval * 2**outage))
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _ensure_head_subscription(self) -> None:
        if self.chain.ws_urls and (self._ws_task is None or self._ws_task.done()):
            self._ws_task = asyncio.create_task(self._follow_heads(), name=f"{self.name}-newHeads")

    async def _follow_heads(self) -> None:
        # A wake-up only: the poll in watch() is the source of truth and covers dropped sockets.
        delay = 0.5
        while True:
            for url in self.chain.ws_urls:
                try:
                    async with AsyncWeb3(WebSocketProvider(url)) as ws:
                        await ws.eth.subscribe("newHeads")
                        _log().info("subscribed to new heads", chain=self.name, url=url)
                        delay = 0.5
                        self.head_subscription.set()
                        self._wake.set()  # heads that came while (re)connecting were not announced
                        async for _ in ws.socket.process_subscriptions():
                            self._wake.set()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - polling continues; try again later
                    _log().warning("newHeads subscription lost; polling", chain=self.name, url=url, error=str(exc))
                self.head_subscription.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def reobserve(self, source_tx: str) -> list[Observation]:
        receipt = await self._receipt(source_tx)
        if receipt is None:
            return []
        block = int(receipt["blockNumber"])
        if block > await self.final_block():
            return []
        if await self._canonical_hash(block) != bytes(receipt["blockHash"]):
            return []
        logs = [
            e for e in receipt["logs"]
            if to_checksum_address(e["address"]) == self.gateway_address and e["topics"]
            and _hex(e["topics"][0]) == self._topic_sent
        ]
        return await self._timed([o for o in (self._observation(e, str(block)) for e in logs) if o is not None])

    async def find_nonce(self, nonce: int) -> Observation | None:
        final = await self.final_block()
        if final < self.start_block:
            return None
        async for logs in self._scan_newest_first(final, [self._topic_sent, None, _topic_int(nonce)]):
            for entry in logs:
                observation = self._observation(entry, str(int(entry["blockNumber"]) - 1))
                if observation is not None:
                    return (await self._timed([observation]))[0]
        return None

    async def _scan_newest_first(self, to_block: int, topics: list[str | None]) -> AsyncIterator[list[Any]]:
        # Bounded ranges (nodes cap eth_getLogs), newest first: lookups are mostly for recent events.
        while to_block >= self.start_block:
            from_block = max(self.start_block, to_block - self.log_range + 1)
            yield await self._get_logs(from_block, to_block, topics)
            to_block = from_block - 1

    # --- reading the gateway -----------------------------------------------------------------

    async def delivery_status_of(self, message_id: bytes, block: int | str = "latest") -> int:
        """0 never delivered, 1 handled, 2 delivered but the handler failed (Gateway.deliveryStatus)."""
        fn = self._gateway.functions.deliveryStatus(bytes(message_id))
        data = fn._encode_transaction_data()

        async def read(w3: AsyncWeb3) -> bytes:
            return await w3.eth.call({"to": self.gateway_address, "data": data}, block_identifier=block)

        raw = await self._call("eth_call deliveryStatus", read)
        if not raw:  # the gateway did not exist yet at that block
            return STATUS_NONE
        return int.from_bytes(bytes(raw)[-32:], "big")

    async def is_delivered(self, message_id: bytes) -> bool:
        # Read at the final block: "delivered" then means the delivery cannot be reorged away, which
        # is what lets a relayer stop working on the message.
        final = await self.final_block()
        if final < 0:
            return False
        try:
            return await self.delivery_status_of(message_id, final) != STATUS_NONE
        except BadFunctionCallOutput:
            return False

    async def delivery_tx(self, message_id: bytes) -> str | None:
        head = await self._call("eth_blockNumber", lambda w3: w3.eth.block_number)
        async for logs in self._scan_newest_first(head, [self._topic_delivered, _hex(message_id)]):
            if logs:
                return _hex(logs[0]["transactionHash"])
        return None

    async def fee(self) -> int:
        data = self._gateway.functions.fee()._encode_transaction_data()
        raw = await self._call("eth_call fee", lambda w3: w3.eth.call({"to": self.gateway_address, "data": data}))
        return int.from_bytes(bytes(raw)[-32:], "big")

    # --- transactions ------------------------------------------------------------------------

    def _signer(self) -> LocalAccount:
        if self.account is None:
            raise NoSignerError(self.name)
        return self.account

    async def _fees(self) -> tuple[int, int]:
        return await current_fees(self._call)

    async def _pending_nonce(self, address: str) -> int:
        return await self._call("eth_getTransactionCount", lambda w3: w3.eth.get_transaction_count(address, "pending"))

    async def _resync_nonce(self, address: str) -> int:
        """The nonce for our next transaction. The node's pending count is the truth, except that a
        lagging endpoint may not list what we just sent: keep our own counter then. If the node has
        nothing of ours in flight (pending == mined) but we counted further, those transactions were
        lost (a reorg, a dropped mempool): reuse their nonces instead of leaving a gap forever."""
        pending = await self._pending_nonce(address)
        local = self._next_nonce
        if local is None or pending >= local:
            return pending
        mined = await self._call("eth_getTransactionCount", lambda w3: w3.eth.get_transaction_count(address, "latest"))
        if mined == pending:
            _log().warning("nonce gap healed", chain=self.name, local=local, node=pending)
            return pending
        return local

    async def _estimate(self, tx: dict[str, Any]) -> int:
        return await self._call("eth_estimateGas", lambda w3: w3.eth.estimate_gas(tx))

    async def _send_signed(self, tx: dict[str, Any]) -> str:
        return await send_signed(self._call, self._signer(), tx)

    async def _send_new(self, tx: dict[str, Any]) -> str:
        """Assigns the next account nonce and sends; one at a time so nonces never collide."""
        signer = self._signer()
        async with self._tx_lock:
            self._next_nonce = await self._resync_nonce(signer.address)
            tx["nonce"] = self._next_nonce
            try:
                tx_hash = await self._send_signed(tx)
            except Exception:
                # The node's view wins after any failure (a nonce used elsewhere, a restart, ...).
                self._next_nonce = None
                raise
            self._next_nonce += 1
            return tx_hash

    async def _base_tx(self, data: str, value: int = 0) -> dict[str, Any]:
        signer = self._signer()
        if self._chain_id is None:
            self._chain_id = await self._call("eth_chainId", lambda w3: w3.eth.chain_id)
        tx: dict[str, Any] = {"from": signer.address, "to": self.gateway_address, "data": data, "value": value,
                              "chainId": self._chain_id, "type": 2}
        return tx

    async def submit(self, delivery: SignedDelivery) -> str:
        envelope = delivery.envelope.encode()
        message_id = keccak256(envelope)
        # The hinted delivery: the gateway checks our hash-to-curve point instead of computing it with
        # one modexp per increment (~4.5k gas each), so every delivery costs what k = 0 would.
        k, y, y_sqrt = hash_to_g1_hint(message_digest(delivery.epoch, message_id))
        data = self._gateway.functions.deliverWithHint(
            envelope, delivery.epoch, bytes(delivery.signature), k, y, y_sqrt
        )._encode_transaction_data()
        tx = await self._base_tx(data)
        try:
            gas = await self._estimate({k: tx[k] for k in ("from", "to", "data", "value")})
        except ContractLogicError as exc:
            reason = evm_deploy.decode_revert(self.abi + _verifier_errors(), evm_deploy.revert_data(exc))
            if reason.startswith("AlreadyDelivered"):
                raise AlreadyDeliveredError(message_id, reason) from None
            raise DeliveryRejected(message_id, reason) from None
        tx["gas"] = int(gas * GAS_MULTIPLIER)
        tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = await self._fees()
        tx_hash = await self._send_new(tx)
        self._sent[tx_hash] = _SentTx(tx=dict(tx), sent_at=time.monotonic(), message_id=message_id)
        _log().info("delivery sent", chain=self.name, tx=tx_hash, msg_id=message_id.hex(), nonce=tx["nonce"],
                    gas=tx["gas"], max_fee=tx["maxFeePerGas"])
        return tx_hash

    async def _receipt(self, tx_hash: str) -> Any | None:
        return await receipt_or_none(self._call, tx_hash)

    def _original(self, tx_hash: str) -> str:
        return self._replaced_by.get(tx_hash.lower(), tx_hash.lower())

    async def delivery_status(self, tx_id: str) -> DeliveryStatus:
        original = self._original(tx_id)
        sent = self._sent.get(original)
        candidates = [original] + (sent.replacements if sent else [])
        for tx_hash in reversed(candidates):
            receipt = await self._receipt(tx_hash)
            if receipt is not None:
                return await self._status_of_receipt(tx_hash, receipt, sent)
        if sent is None:
            return await self._status_of_unknown(original)
        return await self._status_of_unmined(original, sent)

    async def _status_of_receipt(self, tx_hash: str, receipt: Any, sent: _SentTx | None) -> DeliveryStatus:
        block = int(receipt["blockNumber"])
        if receipt["status"] != 1:
            reason = await self._revert_reason(tx_hash, receipt, sent)
            return DeliveryStatus(DeliveryState.REVERTED, f"{reason} (tx {tx_hash}, block {block})")
        if block > await self.final_block():
            return DeliveryStatus(DeliveryState.PENDING, f"mined in block {block} (tx {tx_hash}), not final yet")
        if await self._canonical_hash(block) != bytes(receipt["blockHash"]):
            return DeliveryStatus(DeliveryState.PENDING, f"block {block} of tx {tx_hash} was reorged out")
        return DeliveryStatus(DeliveryState.CONFIRMED, f"tx {tx_hash} final in block {block}")

    async def _revert_reason(self, tx_hash: str, receipt: Any, sent: _SentTx | None) -> str:
        # Receipts carry no revert data: replay the call, with the transaction's own gas limit, on
        # the state at the end of its block (a reverted transaction changed nothing there, and a
        # delivery that lost a race to one earlier in the block then reads AlreadyDelivered).
        if sent is not None:
            call = {k: sent.tx[k] for k in ("from", "to", "data", "value", "gas")}
        else:
            tx = await self._call("eth_getTransactionByHash", lambda w3: w3.eth.get_transaction(tx_hash))
            call = {"from": tx["from"], "to": tx["to"], "data": _hex(tx["input"]), "value": tx["value"], "gas": tx["gas"]}
        at = int(receipt["blockNumber"])
        try:
            await self._call("eth_call (replay)", lambda w3: w3.eth.call(call, block_identifier=at))
        except ContractLogicError as exc:
            return evm_deploy.decode_revert(self.abi + _verifier_errors(), evm_deploy.revert_data(exc))
        return f"status 0 (gas used {receipt['gasUsed']}; replaying the call did not revert: out of gas?)"

    async def _status_of_unknown(self, tx_hash: str) -> DeliveryStatus:
        # Not sent by this process (e.g. before a restart): we cannot re-send it, only judge it.
        async def get(w3: AsyncWeb3) -> Any | None:
            try:
                return await w3.eth.get_transaction(tx_hash)
            except TransactionNotFound:
                return None

        tx = await self._call("eth_getTransactionByHash", get)
        if tx is None:
            return DeliveryStatus(DeliveryState.DROPPED, f"no node knows tx {tx_hash}")
        used = await self._call("eth_getTransactionCount",
                                lambda w3: w3.eth.get_transaction_count(tx["from"], "latest"))
        if used > int(tx["nonce"]):
            return DeliveryStatus(DeliveryState.DROPPED, f"nonce {tx['nonce']} of tx {tx_hash} was used by another transaction")
        return DeliveryStatus(DeliveryState.PENDING, f"tx {tx_hash} waits in the mempool")

    async def _status_of_unmined(self, original: str, sent: _SentTx) -> DeliveryStatus:
        nonce = int(sent.tx["nonce"])
        signer = self._signer()
        used = await self._call("eth_getTransactionCount",
                                lambda w3: w3.eth.get_transaction_count(signer.address, "latest"))
        if used > nonce:
            # One of ours may have been mined between the receipt checks and this count.
            for tx_hash in [original, *sent.replacements]:
                receipt = await self._receipt(tx_hash)
                if receipt is not None:
                    return await self._status_of_receipt(tx_hash, receipt, sent)
            return DeliveryStatus(DeliveryState.DROPPED, f"nonce {nonce} was used by a transaction that is not this delivery")
        waited = time.monotonic() - sent.sent_at
        if waited < self.stuck_after:
            latest = sent.replacements[-1] if sent.replacements else original
            return DeliveryStatus(DeliveryState.PENDING, f"tx {latest} not mined yet ({waited:.0f}s)")
        replacement = await self._replace(original, sent)
        return DeliveryStatus(DeliveryState.PENDING, f"not mined after {waited:.0f}s: re-sent as {replacement}")

    async def _replace(self, original: str, sent: _SentTx) -> str:
        tx = dict(sent.tx)
        fee_now, tip_now = await self._fees()
        tx["maxPriorityFeePerGas"] = max(_bump(tx["maxPriorityFeePerGas"]), tip_now)
        tx["maxFeePerGas"] = max(_bump(tx["maxFeePerGas"]), fee_now, tx["maxPriorityFeePerGas"])
        async with self._tx_lock:  # the same nonce on purpose: the replacement takes the old one's place
            tx_hash = await self._send_signed(tx)
        sent.tx = tx
        sent.sent_at = time.monotonic()
        sent.replacements.append(tx_hash.lower())
        self._replaced_by[tx_hash.lower()] = original
        _log().warning("stuck delivery re-sent with bumped fees", chain=self.name, original=original,
                       replacement=tx_hash, nonce=tx["nonce"], max_fee=tx["maxFeePerGas"],
                       tip=tx["maxPriorityFeePerGas"])
        return tx_hash

    def replacements(self, tx_id: str) -> list[str]:
        """Hashes that replaced a delivery transaction (stuck-transaction handling), oldest first."""
        sent = self._sent.get(self._original(tx_id))
        return list(sent.replacements) if sent else []

    # --- SDK: sending messages -----------------------------------------------------------------

    async def send_message(
        self, dst_domain: int, receiver: bytes, kind: int, payload: bytes, value: int | None = None,
        *, timeout: float = 60.0,
    ) -> tuple[Envelope, str]:
        """Calls Gateway.send and waits for the receipt; returns the envelope the gateway emitted."""
        if len(receiver) != 32:
            raise EvmAdapterError("receiver must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
        if value is None:
            value = await self.fee()
        data = self._gateway.functions.send(dst_domain, bytes(receiver), kind, bytes(payload))._encode_transaction_data()
        tx = await self._base_tx(data, value)
        try:
            gas = await self._estimate({k: tx[k] for k in ("from", "to", "data", "value")})
        except ContractLogicError as exc:
            raise SendRejected(
                f"Gateway.send refused: {evm_deploy.decode_revert(self.abi, evm_deploy.revert_data(exc))}"
            ) from None
        tx["gas"] = int(gas * GAS_MULTIPLIER)
        tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = await self._fees()
        tx_hash = await self._send_new(tx)
        receipt = await self._wait_receipt(tx_hash, timeout)
        if receipt["status"] != 1:
            raise SendRejected(f"Gateway.send transaction {tx_hash} reverted")
        for entry in receipt["logs"]:
            if entry["topics"] and _hex(entry["topics"][0]) == self._topic_sent:
                observation = self._observation(entry, str(receipt["blockNumber"]))
                if observation is not None:
                    return observation.envelope, tx_hash
        raise EvmAdapterError(f"transaction {tx_hash} emitted no valid MessageSent: is {self.gateway_address} a Gateway?")

    async def _wait_receipt(self, tx_hash: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            receipt = await self._receipt(tx_hash)
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise TimeExhausted(f"transaction {tx_hash} not mined within {timeout:.0f}s")
            await asyncio.sleep(0.05)


def hash_to_g1_hint(digest: bytes) -> tuple[int, int, int]:
    """(k, y, y_sqrt) for CommitteeVerifier.verifyWithHint / Gateway.deliverWithHint: the point
    try-and-increment gives (attest.hash_to_g1), and a square root of y proving y is the principal
    root, so the contract skips the modexps (contracts/evm/README.md)."""
    (_, y), k = hash_to_g1(digest)
    y_sqrt = pow(y, (BN254_P + 1) // 4, BN254_P)
    # hash_to_g1 returns the principal root, which is a square; anything else is a bug upstream.
    if y_sqrt * y_sqrt % BN254_P != y:
        raise ValueError(f"hash_to_g1(0x{digest.hex()}) returned a y that is not the principal root")
    return k, y, y_sqrt


def _bump(value: int) -> int:
    return value * FEE_BUMP_NUM // FEE_BUMP_DEN + 1


_VERIFIER_ERRORS: list[dict[str, Any]] | None = None


def _verifier_errors() -> list[dict[str, Any]]:
    # deliver() bubbles the verifier's custom errors (InvalidSignature, UnknownEpoch, ...) up
    # unchanged; they are in the verifier's ABI, not the gateway's.
    global _VERIFIER_ERRORS
    if _VERIFIER_ERRORS is None:
        _VERIFIER_ERRORS = [e for e in evm_deploy.load_artifact("CommitteeVerifier").abi if e.get("type") == "error"]
    return _VERIFIER_ERRORS


# --- deployment -------------------------------------------------------------------------------


async def deploy_gateway(
    w3: AsyncWeb3, account: LocalAccount | str, verifier_address: str, local_domain: int, fee: int = 0,
    owner: str | None = None,
) -> str:
    """Deploys a Gateway bound to a CommitteeVerifier; the deployer owns it unless `owner` is given."""
    signer = Account.from_key(account) if isinstance(account, str) else account
    return await evm_deploy.deploy(
        w3, signer, GATEWAY, local_domain, to_checksum_address(verifier_address), fee, owner or signer.address
    )


async def deploy_recording_receiver(w3: AsyncWeb3, account: LocalAccount | str, gateway_address: str) -> str:
    """A test receiver that records what it handles (contracts/evm/src/test/RecordingReceiver.sol)."""
    return await evm_deploy.deploy(w3, account, "RecordingReceiver", to_checksum_address(gateway_address))
