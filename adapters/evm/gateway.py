"""The EVM chain adapter: Tessera's Gateway contract seen through web3.py.

Watching: only `MessageSent` events in final blocks leave this module (final = at least
`confirmations` blocks under the head, or at/below the node's `finalized` tag when confirmations is
None), so a reorg shallower than the finality depth never reaches the attesters or the relayer.
Delivering: `deliverWithHint(envelope, epoch, signature, k, y, y_sqrt)` transactions (`deliver` with
the hash-to-curve hint of `attest.bn254.hash_to_g1_hint`) signed locally and sent through the
transaction manager (adapters/evm/tx.py: one account nonce counter, EIP-1559 fees, stuck
transactions re-sent with the same nonce and bumped fees). Every RPC goes through an EndpointPool
(adapters/evm/rpc.py: failover, retries on endpoint errors, never on reverts), each endpoint checked
to serve the configured chain id; the per-message reads take rpc.py's lean path: deliveryStatus reads
asked at once go in one JSON-RPC batch, and a batch transaction's receipt is read (and its
MessageDelivered logs parsed) once for all its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import AsyncWeb3, WebSocketProvider
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, TransactionNotFound, Web3RPCError

from adapters.endpoints import AllEndpointsFailed, EndpointPool
from adapters.evm.deploy import deploy, error_abi, load_artifact
from adapters.evm.fees import GatewayFees
from adapters.evm import rpc
from adapters.evm.rpc import (CallBatcher, Coalescer, WrongChainError, checksum, decode_revert, endpoint_pool,
                              revert_data, to_hex)
from adapters.evm.tx import Mined, NoSignerError, NonceUsed, Replaced, SentTx, TxManager, Waiting
from attest.bn254 import hash_to_g1_hint
from relay.aio import wait_event
from relay.batch import Batch
from relay.config import EvmChain, KeyRef
from relay.envelope import Envelope, keccak256, message_digest
from relay.errors import ConfigError, TesseraError
from relay.interfaces import (ChainIdentity, DeliveryState, DeliveryStatus, EndpointHealth, MessageStatus, Observation,
                              SignedBatch, SignedDelivery)
from relay.log import get_logger

T = TypeVar("T")

GATEWAY = "Gateway"
LOG_RANGE = 2_000  # blocks per eth_getLogs: public nodes cap ranges (and result sizes)
POLL_INTERVAL = 0.5  # seconds between head polls when no WS subscription wakes the watcher
STUCK_AFTER = 30.0  # seconds without a receipt before a delivery is re-sent with bumped fees

STATUS_NONE, STATUS_HANDLED, STATUS_FAILED = 0, 1, 2
# A single delivery's gas limit is computed, not estimated (eth_estimateGas is a binary search that runs
# the pairing ~15 times: most of a lone message's submit time). The gateway gives the handler
# min(gasleft - GAS_RESERVE, MAX_HANDLER_GAS), so a limit covering the transaction, its calldata, the
# gateway's own work and MAX_HANDLER_GAS + GAS_RESERVE gives every handler all it can ever get: its
# outcome cannot depend on the limit, and only the gas used is paid. DELIVERY_EXECUTION_GAS bounds the
# gateway's own execution around the handler (verification with the pairing, decoding, the status
# write, events; ~165k for a 512-byte payload), with margin; tests/e2e/test_evm_gas_limits.py checks it
# against real deliveries. A limit too low would only revert the delivery (InsufficientGasForHandler),
# never record the message as failed.
DELIVERY_EXECUTION_GAS = 300_000


def delivery_gas_limit(data: bytes, gas_reserve: int, max_handler_gas: int) -> int:
    """Gas limit of a deliver / deliverWithHint transaction with calldata `data`."""
    return 21_000 + 16 * len(data) + DELIVERY_EXECUTION_GAS + gas_reserve + max_handler_gas


# A batch's limit (deliverBatch) cannot be computed that way: MAX_HANDLER_GAS per message is more
# than a block. It is measured with one execution instead of estimated with ~15-20 (the binary search
# runs the whole batch, its pairing and every handler, each time): eth_createAccessList at the block
# gas limit gives the gas G the batch uses, and batch_gas_limit adds to G what an execution can use
# beyond what the node reports (refunds are at most a fifth of the gas used, EIP-3529; the access list
# the node priced G with saves at most 100 of every >= 2,000 gas a cold access costs, so 5 %: at most
# 5/4 x 21/20 = 21/16 G in all, so 5/16 G more) plus GAS_RESERVE + MAX_HANDLER_GAS + BATCH_GAS_MARGIN. Under that limit, at every
# handler call more than GAS_RESERVE + MAX_HANDLER_GAS is left, so every handler is offered all of
# MAX_HANDLER_GAS, as in the measured run (the block limit it ran under is at least this limit, else
# the estimate is used): each handler runs as it did there, whatever it does with gasleft(), and none
# is recorded failed for want of gas (a single delivery's guarantee) — while every handler runs as in the
# measured run: a receiver whose state is flipped in between (a front-run) can use up to MAX_HANDLER_GAS
# more and starve one after it: the gateway then reverts the whole batch (it records a handler failure
# only for a handler offered all of MAX_HANDLER_GAS, so a starved one reverts, whatever the caller's
# limit); the relayer then sends a reverted batch's members singly (docs/SECURITY.md,
# tests/e2e/test_evm_batch_gas_attack.py). One eth_call at the limit then
# checks it before anything is sent; too low (InsufficientGasForHandler, out of gas) or a node
# without eth_createAccessList falls back to the estimate (logged), which only guarantees what the
# gateway does (a handler failing when offered less than MAX_HANDLER_GAS, out of gas or early
# because gasleft() was low, reverts the batch). tests/e2e/test_evm_gas_limits.py checks both with a
# receiver that fails at once when handed less than MAX_HANDLER_GAS.
BATCH_GAS_MARGIN = 100_000
# The limit a batch is measured under: at most the block's, and no more than what nodes execute a call
# with (geth silently caps calls at its RPC gas cap, 50M by default; a run under less gas than asked
# would not be the run the limit is derived from). A batch needing more is estimated.
BATCH_MEASURE_CAP = 30_000_000
BLOCK_GAS_LIMIT_TTL = 60.0  # seconds a block gas limit read serves (it moves by 1/1024 a block at most)


def batch_gas_limit(measured: int, gas_reserve: int, max_handler_gas: int) -> int:
    """Gas limit of a deliverBatch transaction that used `measured` gas (eth_createAccessList) at a
    limit at least this high."""
    return measured + (measured * 5 + 15) // 16 + gas_reserve + max_handler_gas + BATCH_GAS_MARGIN


def _log() -> Any:
    return get_logger("evm")


def _method_missing(exc: Web3RPCError) -> bool:
    """The node does not serve the method (JSON-RPC -32601, or its words for it)."""
    response = exc.rpc_response if isinstance(exc.rpc_response, dict) else {}
    error = response.get("error")
    if isinstance(error, dict) and error.get("code") == -32601:
        return True
    text = str(exc).lower()
    return any(words in text for words in ("method not found", "not supported", "unsupported method",
                                           "does not exist", "not available"))


# --- errors ---------------------------------------------------------------------------------


class EvmAdapterError(TesseraError):
    """The EVM adapter could not do what was asked; the message says why and what to do."""


class GatewayNotConfigured(EvmAdapterError):
    def __init__(self, chain: str) -> None:
        super().__init__(
            f"chains.{chain}.contracts has no Gateway address: deploy it (`relay localnet up` does) "
            "and add `Gateway = \"0x…\"` under [chains.{chain}.contracts]"
        )


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
    """The 0x-hex private key a KeyRef points at (an unencrypted key, or a keystore decrypted with its
    password), checked; None without a ref."""
    if ref is None:
        return None
    if ref.keystore is not None:  # an encrypted V3 keystore (relay keys import)
        keystore, password = ref.read_keystore()
        try:
            return "0x" + bytes(Account.decrypt(keystore, password)).hex()
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{where} ({ref.describe()}) cannot be decrypted: {exc} (wrong password, or not "
                              "a V3 keystore)") from None
    key = ref.read_text()
    key = key if key.startswith("0x") else "0x" + key
    if len(key) != 66:
        raise ConfigError(f"{where} ({ref.describe()}) must hold a 32-byte hex private key")
    return key


def evm_keystore(key_text: str, password: str, where: str = "the key") -> tuple[dict, str]:
    """A V3 keystore (scrypt) of a 0x-hex private key, and the account's address; the inverse of
    evm_key for a keystore."""
    key = key_text.strip()
    key = key if key.startswith("0x") else "0x" + key
    if len(key) != 66:
        raise ConfigError(f"{where} must hold a 32-byte hex private key")
    try:
        address = Account.from_key(key).address
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid private key: {exc}") from None
    return Account.encrypt(key, password, kdf="scrypt"), address


def _topic_int(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


# --- the adapter ----------------------------------------------------------------------------


class EvmAdapter(GatewayFees):
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
        call_batch: int = 50,
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
        # Every endpoint is checked to serve chain.chain_id before its first request (rpc.py).
        self.pool: EndpointPool[AsyncWeb3] = endpoint_pool(name, chain.rpc_urls, timeout=rpc_timeout,
                                                           attempts=pool_attempts, chain_id=chain.chain_id)
        account = Account.from_key(signer_private_key) if signer_private_key else None
        # Through self._call (not the pool's call bound now), so every RPC of the adapter takes one path.
        self.tx = TxManager(lambda what, fn: self._call(what, fn), account, name=name)

        self.abi = load_artifact(GATEWAY).abi
        # deliver() bubbles the verifier's custom errors (InvalidSignature, UnknownEpoch, ...) up
        # unchanged; they are in the verifier's ABI, not the gateway's.
        self.delivery_errors = self.abi + error_abi("CommitteeVerifier")
        # An offline contract object: encodes calls and decodes events without an endpoint.
        self._gateway = AsyncWeb3().eth.contract(address=self.gateway_address, abi=self.abi)
        events = {e["name"]: e for e in self.abi if e.get("type") == "event"}
        self._topic_sent = to_hex(event_abi_to_log_topic(events["MessageSent"]))
        self._topic_delivered = to_hex(event_abi_to_log_topic(events["MessageDelivered"]))
        self._delivery_status_selector = self._gateway.functions.deliveryStatus(bytes(32))._encode_transaction_data()[:10]

        self._sent: dict[str, SentTx] = {}  # deliveries sent by this process, by original hash
        self._replaced_by: dict[str, str] = {}  # replacement hash → the original it stands for
        self._wake = asyncio.Event()
        self.head_subscription = asyncio.Event()  # set while a newHeads subscription is live
        self._ws_task: asyncio.Task[None] | None = None
        self._block_times: dict[int, int] = {}  # final block number -> timestamp (bounded)
        self._handler_gas: tuple[int, int] | None = None  # the gateway's (GAS_RESERVE, MAX_HANDLER_GAS)
        self._block_gas_limit: tuple[float, int] | None = None  # (read at, gas limit) for batch limits
        self._access_lists = True  # False once the node refused eth_createAccessList (batches estimate)
        self._shared = Coalescer()  # reads asked for by many messages at once, made once (final block, ...)
        # deliveryStatus reads asked for at once: one JSON-RPC batch of at most `call_batch`
        self._status_reads = CallBatcher(lambda what, fn: self._call(what, fn), size=call_batch)
        # (tx hash, block hash) -> {message id: handled} of the gateway's MessageDelivered logs (bounded)
        self._delivered_in: dict[tuple[bytes, bytes], dict[bytes, bool]] = {}

    @classmethod
    def from_config(cls, name: str, chain: EvmChain, **options: Any) -> "EvmAdapter":
        """Reads the signer key the config points at (file or env variable); watch-only without one."""
        key = chain.signer.read_text() if chain.signer is not None else None
        return cls(name, chain, key, **options)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # Each endpoint that answers serves the configured chain (one down now is checked before its
        # first request later, rpc.LeanHTTPProvider); then the pool's view, as every read sees it.
        providers = [p for p in map(rpc.lean, self.pool.clients) if p is not None]
        answers = await asyncio.gather(*(p.node_chain_id() for p in providers), return_exceptions=True)
        for provider, answer in zip(providers, answers):
            if isinstance(answer, WrongChainError):
                raise EvmAdapterError(str(answer))
            if isinstance(answer, BaseException):  # a dead endpoint never blocks start-up
                _log().warning("endpoint not reachable at start", chain=self.name, endpoint=provider.endpoint_uri,
                               error=f"{type(answer).__name__}: {answer}"[:200])
        chain_id = await self._call("eth_chainId", lambda w3: w3.eth.chain_id)
        if chain_id != self.chain.chain_id:
            raise EvmAdapterError(
                f"chain {self.name}: the node reports chain id {chain_id}, the config says {self.chain.chain_id}; "
                "point rpc_urls at the right network"
            )
        self.tx.chain_id = chain_id
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

    async def wallet_balances(self) -> dict[str, int]:
        return await self.tx.wallet_balances()

    def health(self) -> list[EndpointHealth]:
        return self.pool.health()

    async def chain_identity(self) -> ChainIdentity:
        chain_id = await self._call("eth_chainId", lambda w3: w3.eth.chain_id)
        genesis = await self._call("eth_getBlockByNumber(0)", lambda w3: w3.eth.get_block(0))
        return ChainIdentity("evm", str(chain_id), to_hex(genesis["hash"]))

    async def cursor_problem(self, cursor: str) -> str | None:
        head = await self._call("eth_blockNumber", lambda w3: w3.eth.block_number)
        if int(cursor) > head:
            return f"its cursor is block {int(cursor)}, ahead of the chain's head {head}"
        return None

    @property
    def account(self) -> LocalAccount | None:
        return self.tx.account

    async def _call(self, what: str, fn: Callable[[AsyncWeb3], Awaitable[T]]) -> T:
        return await self.pool.call(what, fn)

    # --- finality ----------------------------------------------------------------------------

    async def final_block(self) -> int:
        """Highest block number considered final now (-1 when none is); callers asking at once share
        one read."""
        return await self._shared.run("final block", self._final_block)

    async def _final_block(self) -> int:
        if self.confirmations is None:
            block = await self._call("eth_getBlockByNumber(finalized)", lambda w3: w3.eth.get_block("finalized"))
            return int(block["number"])
        head = await self._call("eth_blockNumber", rpc.block_number)
        return head - self.confirmations

    async def _canonical_hash(self, number: int) -> bytes | None:
        return await self._shared.run(("block hash", number), lambda: self._read_canonical_hash(number))

    async def _read_canonical_hash(self, number: int) -> bytes | None:
        found = await self._call("eth_getBlockByNumber", lambda w3: rpc.block_header(w3, number))
        return None if found is None else found["hash"]  # None: the chain got shorter

    # --- watching ----------------------------------------------------------------------------

    def _observation(self, entry: Any, cursor: str) -> Observation | None:
        topics = [bytes(t) for t in entry["topics"]]
        tx = to_hex(entry["transactionHash"])
        where = {"chain": self.name, "tx": tx, "block": entry["blockNumber"], "log_index": entry["logIndex"]}
        if len(topics) != 4 or to_hex(topics[0]) != self._topic_sent:
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
        logs = await self._call("eth_getLogs", lambda w3: rpc.get_logs(w3, params))
        return sorted((e for e in logs if not e.get("removed")), key=lambda e: (e["blockNumber"], e["logIndex"]))

    async def _block_time(self, number: int) -> int | None:
        # Final blocks do not change, so their timestamps are cached (bounded: the newest 1,024).
        cache = self._block_times
        if number not in cache:
            block = await self._call("eth_getBlockByNumber", lambda w3: rpc.block_header(w3, number))
            if block is None or block["timestamp"] is None:
                return None
            if len(cache) >= 1024:
                cache.pop(next(iter(cache)))
            cache[number] = block["timestamp"]
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
            await wait_event(self._wake, self.poll_interval)

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
        receipt = await self.tx.receipt(source_tx)
        if receipt is None:
            return []
        block = int(receipt["blockNumber"])
        if block > await self.final_block():
            return []
        if await self._canonical_hash(block) != bytes(receipt["blockHash"]):
            return []
        logs = [
            e for e in receipt["logs"]
            if checksum(e["address"]) == self.gateway_address and e["topics"]
            and to_hex(e["topics"][0]) == self._topic_sent
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
        # deliveryStatus(bytes32): its selector and the id, encoded by hand (the hot read of every message)
        data = self._delivery_status_selector + bytes(message_id).rjust(32, b"\0").hex()
        if len(message_id) != 32:
            raise EvmAdapterError(f"a message id is 32 bytes, not {len(message_id)}")
        raw = await self._status_reads.eth_call({"to": self.gateway_address, "data": data}, block)
        if not raw:  # the gateway did not exist yet at that block
            return STATUS_NONE
        return int.from_bytes(bytes(raw)[-32:], "big")

    async def is_delivered(self, message_id: bytes, envelope: Envelope | None = None) -> bool:
        # A failed handler (status 2) is not delivered: the relayer retries it (retry_failed). The
        # gateway never forgets a delivery, so `envelope` adds nothing here.
        return await self.message_status(message_id) is MessageStatus.DELIVERED

    async def message_status(self, message_id: bytes, envelope: Envelope | None = None) -> MessageStatus:
        # Read at the final block: "delivered" then means the delivery cannot be reorged away, which
        # is what lets a relayer stop working on the message.
        final = await self.final_block()
        if final < 0:
            return MessageStatus.NOT_DELIVERED
        try:
            status = await self.delivery_status_of(message_id, final)
        except BadFunctionCallOutput:
            return MessageStatus.NOT_DELIVERED
        return {STATUS_HANDLED: MessageStatus.DELIVERED, STATUS_FAILED: MessageStatus.HANDLER_FAILED}.get(
            status, MessageStatus.NOT_DELIVERED)

    async def delivery_tx(self, message_id: bytes) -> str | None:
        head = await self._call("eth_blockNumber", lambda w3: w3.eth.block_number)
        async for logs in self._scan_newest_first(head, [self._topic_delivered, to_hex(message_id)]):
            if logs:
                return to_hex(logs[0]["transactionHash"])
        return None

    async def fee(self) -> int:
        data = self._gateway.functions.fee()._encode_transaction_data()
        raw = await self._call("eth_call fee", lambda w3: rpc.eth_call(w3, {"to": self.gateway_address, "data": data}))
        return int.from_bytes(bytes(raw)[-32:], "big")

    # --- transactions ------------------------------------------------------------------------

    async def submit(self, delivery: SignedDelivery) -> str:
        envelope = delivery.envelope.encode()
        message_id = keccak256(envelope)
        # The hinted delivery: the gateway checks our hash-to-curve point instead of computing it with
        # one modexp per increment (~4.5k gas each), so every delivery costs what k = 0 would.
        k, y, y_sqrt = hash_to_g1_hint(message_digest(delivery.epoch, message_id))
        data = self._gateway.functions.deliverWithHint(
            envelope, delivery.epoch, bytes(delivery.signature), k, y, y_sqrt
        )._encode_transaction_data()
        try:
            tx = await self._delivery_transaction(data)
        except ContractLogicError as exc:
            reason = decode_revert(self.delivery_errors, revert_data(exc))
            if reason.startswith("AlreadyDelivered"):
                if await self.delivery_status_of(message_id) == STATUS_FAILED:
                    # Delivered but its handler failed: re-running the handler is the delivery now.
                    return await self.retry_failed(delivery.envelope)
                raise AlreadyDeliveredError(message_id, reason) from None
            raise DeliveryRejected(message_id, reason) from None
        return await self._send_delivery(tx, message_id, "delivery sent")

    async def _delivery_transaction(self, data: str) -> dict[str, Any]:
        """A single delivery's transaction at the computed limit (delivery_gas_limit), checked with one
        eth_call; estimated instead if that call runs short of gas (the constant would be wrong for
        this chain's gas schedule: logged)."""
        _ = self.tx.signer  # a watch-only adapter says so (NoSignerError) before any RPC
        gas = delivery_gas_limit(bytes.fromhex(data.removeprefix("0x")), *await self._handler_limits())
        return await self._at_limit_or_estimated(data, gas, "computed delivery gas limit too low: estimating instead")

    async def _at_limit_or_estimated(self, data: str, gas: int, too_low: str, **fields: Any) -> dict[str, Any]:
        """The delivery transaction at `gas`, checked by one eth_call at that limit; estimated instead
        (logged as `too_low`) when that call runs short of gas — in a handler (InsufficientGasForHandler)
        or outside one. Any other refusal raises (ContractLogicError: the caller decodes it)."""
        try:
            return await self.tx.transaction(self.gateway_address, data, gas=gas, preflight=True)
        except ContractLogicError as exc:
            if not decode_revert(self.delivery_errors, revert_data(exc)).startswith("InsufficientGasForHandler"):
                raise
            short = "InsufficientGasForHandler"
        except Web3RPCError as exc:  # e.g. "out of gas" outside a handler
            short = str(exc)
        _log().warning(too_low, chain=self.name, gas=gas, error=short, **fields)
        return await self.tx.transaction(self.gateway_address, data)

    async def _handler_limits(self) -> tuple[int, int]:
        """The gateway's (GAS_RESERVE, MAX_HANDLER_GAS), read once."""
        if self._handler_gas is None:
            reserve, most = await asyncio.gather(*(
                self._call(f"eth_call {name}", lambda w3, name=name: rpc.eth_call(w3,
                    {"to": self.gateway_address, "data": self._gateway.functions[name]()._encode_transaction_data()}))
                for name in ("GAS_RESERVE", "MAX_HANDLER_GAS")))
            self._handler_gas = (int.from_bytes(bytes(reserve)[-32:], "big"), int.from_bytes(bytes(most)[-32:], "big"))
        return self._handler_gas

    async def _block_limit(self) -> int:
        now = time.monotonic()
        if self._block_gas_limit is None or now - self._block_gas_limit[0] > BLOCK_GAS_LIMIT_TTL:
            self._block_gas_limit = (now, await self.tx.block_gas_limit())
        return self._block_gas_limit[1]

    async def _batch_transaction(self, data: str) -> dict[str, Any]:
        """A deliverBatch transaction at batch_gas_limit of its gas measured by one eth_createAccessList
        at the block gas limit, checked with one eth_call; estimated instead when the node lacks the
        method, the limit exceeds the block's or the check runs short of gas (logged). A refusal
        raises ContractLogicError (decodable: from the estimate when the node gave no revert data)."""
        _ = self.tx.signer  # a watch-only adapter says so (NoSignerError) before any RPC
        if not self._access_lists:
            return await self.tx.transaction(self.gateway_address, data)
        (reserve, most), block_limit = await asyncio.gather(self._handler_limits(), self._block_limit())
        cap = min(block_limit, BATCH_MEASURE_CAP)
        try:
            measured = await self.tx.access_list_gas(self.gateway_address, data, cap)
        except ContractLogicError as exc:
            if revert_data(exc):
                raise  # refused, with the reason
            return await self.tx.transaction(self.gateway_address, data)  # refused: the estimate says why
        except Web3RPCError as exc:
            if _method_missing(exc):
                self._access_lists = False  # for good: no use asking again
            _log().warning("eth_createAccessList failed: batch gas limit estimated instead", chain=self.name,
                           error=str(exc), again=self._access_lists)
            return await self.tx.transaction(self.gateway_address, data)
        gas = batch_gas_limit(measured, reserve, most)
        if gas > cap:
            _log().warning("batch too heavy for a measured gas limit: estimating instead", chain=self.name,
                           measured=measured, gas=gas, block_gas_limit=cap)
            return await self.tx.transaction(self.gateway_address, data)
        return await self._at_limit_or_estimated(data, gas, "measured batch gas limit too low: estimating instead",
                                                 measured=measured)

    async def retry_failed(self, envelope: Envelope) -> str:
        """Gateway.retryFailed(envelope): re-runs the handler of a message recorded with a failed one
        (relay.interfaces.ChainAdapter.retry_failed). Refusals (not failed, handler still failing)
        raise DeliveryRejected before anything is sent."""
        encoded = envelope.encode()
        message_id = keccak256(encoded)
        data = self._gateway.functions.retryFailed(encoded)._encode_transaction_data()
        try:
            tx = await self.tx.transaction(self.gateway_address, data)
        except ContractLogicError as exc:
            raise DeliveryRejected(message_id, decode_revert(self.delivery_errors, revert_data(exc))) from None
        return await self._send_delivery(tx, message_id, "failed delivery retried")

    async def submit_batch(self, batch: SignedBatch, indices: list[int]) -> dict[int, str]:
        """One Gateway.deliverBatch with every envelope of the batch (relay.interfaces.ChainAdapter):
        the root's signature is checked once (not at all when verified before), messages delivered
        before are skipped, so resuming a half-delivered batch sends the same call again."""
        data = deliver_batch_data(self._gateway, batch.batch, batch.epoch, batch.signature)
        root = batch.batch.root
        try:
            tx = await self._batch_transaction(data)
        except ContractLogicError as exc:
            raise DeliveryRejected(root, decode_revert(self.delivery_errors, revert_data(exc))) from None
        sent = await self._send_delivery(tx, root, "batch delivery sent", count=len(batch.batch.envelopes))
        return {i: sent for i in indices}

    async def close_batch(self, batch: SignedBatch) -> None:
        """Nothing to give back: a verified root is one storage slot the gateway keeps (deliverWithProof)."""
        return None

    async def _send_delivery(self, tx: dict[str, Any], message_id: bytes, what: str, **fields: Any) -> str:
        sent = await self.tx.send(tx)
        self._sent[sent.original] = sent
        _log().info(what, chain=self.name, tx=sent.original, msg_id=message_id.hex(), nonce=sent.nonce,
                    gas=tx["gas"], max_fee=tx["maxFeePerGas"], **fields)
        return sent.original

    def _original(self, tx_hash: str) -> str:
        return self._replaced_by.get(tx_hash.lower(), tx_hash.lower())

    async def delivery_status(self, tx_id: str, message_id: bytes | None = None) -> DeliveryStatus:
        original = self._original(tx_id)
        sent = self._sent.get(original)
        if sent is None:
            # Not sent by this process (e.g. before a restart): we cannot re-send it, only judge it.
            receipt = await self.tx.receipt(original)
            if receipt is not None:
                return await self._status_of_receipt(original, receipt, None, message_id)
            return await self._status_of_unknown(original)
        match await self.tx.check(sent, self.stuck_after):
            case Mined(tx_hash, receipt):
                return await self._status_of_receipt(tx_hash, receipt, sent, message_id)
            case NonceUsed(nonce):
                return DeliveryStatus(DeliveryState.DROPPED,
                                      f"nonce {nonce} was used by a transaction that is not this delivery")
            case Waiting(tx_hash, waited):
                return DeliveryStatus(DeliveryState.PENDING, f"tx {tx_hash} not mined yet ({waited:.0f}s)")
            case Replaced(tx_hash, waited):
                self._replaced_by[tx_hash] = original
                return DeliveryStatus(DeliveryState.PENDING, f"not mined after {waited:.0f}s: re-sent as {tx_hash}")

    async def _status_of_receipt(self, tx_hash: str, receipt: Any, sent: SentTx | None,
                                 message_id: bytes | None = None) -> DeliveryStatus:
        block = int(receipt["blockNumber"])
        if receipt["status"] != 1:
            reason = await self._revert_reason(tx_hash, receipt, sent)
            return DeliveryStatus(DeliveryState.REVERTED, f"{reason} (tx {tx_hash}, block {block})")
        if block > await self.final_block():
            return DeliveryStatus(DeliveryState.PENDING, f"mined in block {block} (tx {tx_hash}), not final yet")
        if await self._canonical_hash(block) != bytes(receipt["blockHash"]):
            return DeliveryStatus(DeliveryState.PENDING, f"block {block} of tx {tx_hash} was reorged out")
        delivered = self._deliveries(receipt)
        if message_id is None:
            failed = [m for m, handled in delivered.items() if not handled]
        else:
            failed = [message_id] if delivered.get(bytes(message_id)) is False else []
        if failed:
            return DeliveryStatus(DeliveryState.HANDLER_FAILED,
                                  f"tx {tx_hash} final in block {block}, but the receiver's handler failed "
                                  f"for message {to_hex(failed[0])}: retry it (Gateway.retryFailed)")
        if message_id is not None and bytes(message_id) not in delivered:
            # deliverBatch skips a message delivered before (by another relayer, or another batch).
            return DeliveryStatus(DeliveryState.DROPPED, f"tx {tx_hash} (final in block {block}) did not deliver "
                                                         f"message 0x{message_id.hex()}: it was delivered before")
        return DeliveryStatus(DeliveryState.CONFIRMED, f"tx {tx_hash} final in block {block}")

    def _deliveries(self, receipt: Any) -> dict[bytes, bool]:
        """{message id: handled} of the gateway's MessageDelivered logs in `receipt`, in log order: read
        once per receipt however many of a batch's messages ask (a receipt's logs are fixed by its
        transaction and block, the key)."""
        key = (bytes(receipt.get("transactionHash") or b""), bytes(receipt["blockHash"]))
        found = self._delivered_in.get(key) if key[0] else None
        if found is not None:
            return found
        found = {}
        for entry in receipt["logs"]:
            topics = entry["topics"]
            if (topics and to_hex(topics[0]) == self._topic_delivered
                    and checksum(entry["address"]) == self.gateway_address):
                (_nonce, handled) = abi_decode(["uint64", "bool"], bytes(entry["data"]))
                found.setdefault(bytes(topics[1]), bool(handled))
        if key[0]:
            if len(self._delivered_in) >= 256:
                self._delivered_in.pop(next(iter(self._delivered_in)))
            self._delivered_in[key] = found
        return found

    async def _revert_reason(self, tx_hash: str, receipt: Any, sent: SentTx | None) -> str:
        # Replayed with the transaction's own gas limit on the state at the end of its block.
        if sent is not None:
            call = sent.tx
        else:
            tx = await self._call("eth_getTransactionByHash", lambda w3: w3.eth.get_transaction(tx_hash))
            call = {"from": tx["from"], "to": tx["to"], "data": to_hex(tx["input"]), "value": tx["value"],
                    "gas": tx["gas"]}
        reverted, data = await self.tx.replay(call, int(receipt["blockNumber"]))
        if reverted:
            return decode_revert(self.delivery_errors, data)
        return f"status 0 (gas used {receipt['gasUsed']}; replaying the call did not revert: out of gas?)"

    async def _status_of_unknown(self, tx_hash: str) -> DeliveryStatus:
        async def get(w3: AsyncWeb3) -> Any | None:
            try:
                return await w3.eth.get_transaction(tx_hash)
            except TransactionNotFound:
                return None

        tx = await self._call("eth_getTransactionByHash", get)
        if tx is None:
            return DeliveryStatus(DeliveryState.DROPPED, f"no node knows tx {tx_hash}")
        if await self.tx.count(tx["from"], "latest") > int(tx["nonce"]):
            return DeliveryStatus(DeliveryState.DROPPED, f"nonce {tx['nonce']} of tx {tx_hash} was used by another transaction")
        return DeliveryStatus(DeliveryState.PENDING, f"tx {tx_hash} waits in the mempool")

    def replacements(self, tx_id: str) -> list[str]:
        """Hashes that replaced a delivery transaction (stuck-transaction handling), oldest first."""
        sent = self._sent.get(self._original(tx_id))
        return sent.replacements if sent else []

    # --- SDK: sending messages -----------------------------------------------------------------

    async def send_message(
        self, dst_domain: int, receiver: bytes, kind: int, payload: bytes, value: int | None = None,
        *, timeout: float = 60.0,
    ) -> tuple[Envelope, str]:
        """Calls Gateway.send and waits for the receipt; returns the envelope the gateway emitted."""
        if len(receiver) != 32:
            raise EvmAdapterError("receiver must be 32 bytes (left-pad an EVM address with 12 zero bytes)")
        if value is None:  # Gateway.quote (adapters/evm/fees.py); the gateway refunds anything above it
            value = await self.quote(dst_domain, len(payload))
        data = self._gateway.functions.send(dst_domain, bytes(receiver), kind, bytes(payload))._encode_transaction_data()
        try:
            tx = await self.tx.transaction(self.gateway_address, data, value)
        except ContractLogicError as exc:
            raise SendRejected(f"Gateway.send refused: {decode_revert(self.abi, revert_data(exc))}") from None
        mined = await self.tx.wait(await self.tx.send(tx), timeout)
        tx_hash, receipt = mined.tx_hash, mined.receipt
        if receipt["status"] != 1:
            raise SendRejected(f"Gateway.send transaction {tx_hash} reverted")
        for entry in receipt["logs"]:
            if entry["topics"] and to_hex(entry["topics"][0]) == self._topic_sent:
                observation = self._observation(entry, str(receipt["blockNumber"]))
                if observation is not None:
                    return observation.envelope, tx_hash
        raise EvmAdapterError(f"transaction {tx_hash} emitted no valid MessageSent: is {self.gateway_address} a Gateway?")

    async def _wait_receipt(self, tx_hash: str, timeout: float) -> Any:
        """The receipt of a transaction this adapter sent (whichever version of it was mined), once
        mined; TxNotMined after `timeout` seconds."""
        sent = self._sent.get(self._original(tx_hash))
        if sent is None:
            raise EvmAdapterError(f"chain {self.name}: transaction {tx_hash} was not sent by this adapter")
        return (await self.tx.wait(sent, timeout)).receipt


# --- deployment -------------------------------------------------------------------------------


async def deploy_gateway(
    w3: AsyncWeb3, account: LocalAccount | str, verifier_address: str, local_domain: int, fee: int = 0,
    owner: str | None = None,
) -> str:
    """Deploys a Gateway bound to a CommitteeVerifier; the deployer owns it unless `owner` is given."""
    signer = Account.from_key(account) if isinstance(account, str) else account
    return await deploy(
        w3, signer, GATEWAY, local_domain, to_checksum_address(verifier_address), fee, owner or signer.address
    )


async def deploy_recording_receiver(w3: AsyncWeb3, account: LocalAccount | str, gateway_address: str) -> str:
    """A test receiver that records what it handles (contracts/evm/src/test/RecordingReceiver.sol)."""
    return await deploy(w3, account, "RecordingReceiver", to_checksum_address(gateway_address))


# --- batches (docs/PROTOCOL.md "Batch attestations"; Gateway.deliverBatch, verifyRoot, deliverWithProof).
# Calldata encoders on a web3 contract of the Gateway ABI (an adapter's `_gateway`, or
# `AsyncWeb3().eth.contract(abi=load_artifact("Gateway").abi)`); the relayer's batching sends them.


def deliver_batch_data(gateway: Any, batch: Batch, epoch: int, signature: bytes) -> str:
    """Gateway.deliverBatch: the committee's signature of `batch.digest(epoch)`, every envelope."""
    return gateway.functions.deliverBatch(batch.root, epoch, bytes(signature),
                                          [e.encode() for e in batch.envelopes])._encode_transaction_data()


def verify_root_data(gateway: Any, batch: Batch, epoch: int, signature: bytes) -> str:
    """Gateway.verifyRoot: remembers the root, so deliverWithProof needs no pairing."""
    return gateway.functions.verifyRoot(batch.root, batch.src_domain, len(batch.envelopes), epoch,
                                        bytes(signature))._encode_transaction_data()


def deliver_with_proof_data(gateway: Any, batch: Batch, index: int) -> str:
    """Gateway.deliverWithProof of the message at `index` of a verified root."""
    return gateway.functions.deliverWithProof(batch.envelopes[index].encode(), index, batch.proof(index),
                                              batch.root)._encode_transaction_data()
