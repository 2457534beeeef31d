"""The Solana chain adapter: watches the Tessera program's outbox (Send) and delivers envelopes to
its gateway (Deliver), behind `relay.interfaces.ChainAdapter`. Program side: contracts/solana/README.md.

Finality is the configured commitment (`finalized` by default): `watch`, `reobserve`, `find_nonce`,
`is_delivered` and `delivery_status` only report what reached it. On the localnet server, finalized
trails the tip by `--finality-slots` slots.

- watch: `getSignaturesForAddress(program_id, until=cursor)` pages, oldest first, then
  `getTransaction` per successful transaction; envelopes come from the `TESSERA_SENT` log lines our
  program wrote, decoded and checked (src_domain = this chain's domain). The cursor is the signature
  of the last transaction whose envelopes were all yielded; `None` (or "") starts from the oldest
  transaction the node still has. A `logsSubscribe` (mentions program_id, at the commitment) wakes
  the loop; polling every `poll_interval` takes over while the WebSocket is down, and every
  `idle_poll_interval` otherwise. RPC outages are logged and retried: watch runs forever.
- submit: Deliver with a compute-budget limit, a fresh blockhash (confirmed) and **no preflight**, so a
  refused delivery (another relayer won, a bad signature) lands as a failed transaction whose program
  error `delivery_status` names (REVERTED "ALREADY_DELIVERED ..."). The blockhash's last valid block
  height is remembered per signature (in memory: after a restart an unknown signature stays PENDING
  and the pipeline's submitted timeout takes over).
- delivery_status: CONFIRMED / REVERTED once the status reached the commitment; DROPPED when the node
  does not know the signature and the block height at the commitment passed the last valid height
  (it can never land then); PENDING otherwise.
- is_delivered: the receipt PDA ["delivered", message_id] exists at the commitment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Awaitable, Callable, TypeVar

import httpx2
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment, Confirmed
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solana.rpc.websocket_api import SolanaWsClient
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.errors import MinContextSlotNotReachedMessage, NodeUnhealthyMessage
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from adapters.endpoints import AllEndpointsFailed, EndpointPool
from adapters.solana.program import (
    Attestation,
    DeliveryReceipt,
    ProgramErrorCode,
    SolanaProgramError,
    deliver_ix,
    initialize_gateway,
    receipt_address,
    send_ix,
    sent_envelopes_of,
)
from relay.interfaces import DeliveryState, DeliveryStatus, EndpointHealth, Observation, SignedDelivery
from relay.config import SolanaChain
from relay.envelope import Envelope, EnvelopeError
from relay.errors import TesseraError
from relay.lifecycle import cancel_quietly
from relay.log import get_logger

__all__ = ["SolanaAdapter", "SolanaAdapterError", "describe_transaction_error", "initialize_gateway", "load_keypair"]

log = get_logger("adapters.solana")

T = TypeVar("T")

# Deliver measured ~64k CU (README.md); the limit leaves room for a slower PDA bump search.
DELIVER_CU_LIMIT = 120_000
SEND_CU_LIMIT = 60_000
_SIGNATURE_PAGE = 1000  # getSignaturesForAddress's maximum
_REMEMBERED_BLOCKHASHES = 100_000
_LEVELS = {"processed": 0, "confirmed": 1, "finalized": 2}


def _level(status: Any) -> int:
    # solders' confirmation-status enum is not hashable: compare instead of a dict lookup.
    if status == TransactionConfirmationStatus.Finalized:
        return 2
    if status == TransactionConfirmationStatus.Confirmed:
        return 1
    return 0 if status == TransactionConfirmationStatus.Processed else -1


class SolanaAdapterError(TesseraError):
    """A Solana adapter operation could not be done; the message says what to fix."""


def _is_retryable(exc: BaseException) -> bool:
    # The endpoint's fault (down, slow, rate-limited, failing) is worth another endpoint; a JSON-RPC
    # error (RPCException: bad request, preflight failure) is the request's and is raised at once.
    if isinstance(exc, RPCException):
        # A node that is behind answers with a JSON-RPC error, but another node may well answer.
        return bool(exc.args) and isinstance(exc.args[0], (NodeUnhealthyMessage, MinContextSlotNotReachedMessage))
    if isinstance(exc, SolanaRpcException):
        cause = exc.__cause__
        if isinstance(cause, httpx2.HTTPStatusError):
            status = cause.response.status_code
            return status == 429 or status >= 500
        return isinstance(cause, httpx2.TransportError)
    return isinstance(exc, (OSError, asyncio.TimeoutError, httpx2.TransportError))


def load_keypair(text: str, where: str = "the key") -> Keypair:
    """A Solana keypair as the Solana CLI writes it (a JSON array of the 64 secret-key bytes) or as
    a base58 string."""
    text = text.strip()
    try:
        if text.startswith("["):
            return Keypair.from_bytes(bytes(json.loads(text)))
        return Keypair.from_base58_string(text)
    except (ValueError, TypeError) as exc:
        raise SolanaAdapterError(
            f"{where} is not a Solana keypair: write a JSON array of 64 bytes (solana-keygen's format) "
            f"or a base58 secret key ({exc})"
        ) from None


def describe_transaction_error(err: Any) -> str:
    """A transaction error as a person reads it: the program's error name for a custom code."""
    inner = getattr(err, "err", None)
    code = getattr(inner, "code", None)
    if code is not None:
        try:
            name = ProgramErrorCode(code).name
        except ValueError:
            name = "UNKNOWN_PROGRAM_ERROR"
        return f"{name} (custom error {code:#x} in instruction {getattr(err, 'index', '?')})"
    return str(err)


class SolanaAdapter:
    def __init__(
        self,
        name: str,
        chain: SolanaChain,
        signer: Keypair | None = None,
        *,
        poll_interval: float = 1.0,
        idle_poll_interval: float = 10.0,
        rpc_timeout: float = 10.0,
        pool_attempts: int = 4,
        pool_base_delay: float = 0.2,
    ) -> None:
        if chain.program_id is None:
            raise SolanaAdapterError(f"chains.{name}.program_id is not set: deploy the program and write its id")
        self.name = name
        self.domain = chain.domain
        self.chain = chain
        self.program_id = Pubkey.from_string(chain.program_id)
        self.commitment: Commitment = chain.commitment  # type: ignore[assignment]
        self.signer = signer
        self.poll_interval = poll_interval
        self.idle_poll_interval = idle_poll_interval
        self._pool: EndpointPool[AsyncClient] = EndpointPool(
            name,
            chain.rpc_urls,
            lambda url: AsyncClient(url, timeout=rpc_timeout, max_transport_retries=0),
            _is_retryable,
            attempts=pool_attempts,
            base_delay=pool_base_delay,
            timeout=rpc_timeout,
        )
        # signature -> last valid block height of its blockhash: what tells DROPPED from PENDING.
        self._last_valid: dict[str, int] = {}
        self.ws_connected = False

    @classmethod
    def from_config(cls, name: str, chain: SolanaChain, **options: Any) -> "SolanaAdapter":
        """Reads the signer the config points at (file or env variable); watch-only without one."""
        signer = load_keypair(chain.signer.read_text(), chain.signer.describe()) if chain.signer else None
        return cls(name, chain, signer, **options)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for client in self._pool.clients:
            await client.close()

    async def __aenter__(self) -> "SolanaAdapter":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def health(self) -> list[EndpointHealth]:
        return self._pool.health()

    async def _rpc(self, what: str, fn: Callable[[AsyncClient], Awaitable[T]]) -> T:
        return await self._pool.call(what, fn)

    # ----- source side ---------------------------------------------------------------------

    async def watch(self, cursor: str | None) -> AsyncIterator[Observation]:  # type: ignore[override]
        last = Signature.from_string(cursor) if cursor else None
        wake = asyncio.Event()
        waker = asyncio.create_task(self._wake_on_logs(wake)) if self.chain.ws_urls else None
        failures = 0
        try:
            while True:
                wake.clear()
                try:
                    pending = await self._signatures_after(last)
                except (AllEndpointsFailed, RPCException) as exc:
                    # Forever means through outages too: log, back off, try again.
                    failures += 1
                    log.error("solana watch cannot list program transactions; retrying", chain=self.name,
                              error=str(exc)[:300], failures=failures)
                    await asyncio.sleep(min(30.0, self.poll_interval * 2**min(failures, 5)))
                    continue
                failures = 0
                caught_up = True
                for signature, err in pending:
                    if err is not None:  # a failed Send emitted nothing
                        continue
                    try:
                        observations = await self._observations(signature, cursor_before=str(last) if last else "")
                    except (AllEndpointsFailed, RPCException) as exc:
                        # Never skip a transaction we could not read: it may hold envelopes. Stay
                        # on it (loudly) until a node serves it.
                        log.error("cannot read a program transaction; retrying it", chain=self.name,
                                  tx=str(signature), error=str(exc)[:300])
                        observations = None
                    if observations is None:  # not served (yet) at the commitment: next round
                        caught_up = False
                        break
                    for observation in observations:
                        yield observation
                    last = signature
                if not caught_up:
                    await asyncio.sleep(self.poll_interval)
                    continue
                # Idle: the subscription wakes us; polling is the fallback when it is down.
                timeout = self.idle_poll_interval if self.ws_connected else self.poll_interval
                try:
                    await asyncio.wait_for(wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
        finally:
            await cancel_quietly(waker)

    async def _wake_on_logs(self, wake: asyncio.Event) -> None:
        attempt = 0
        while True:
            url = self.chain.ws_urls[attempt % len(self.chain.ws_urls)]
            try:
                async with SolanaWsClient(url) as ws:
                    await ws.logs_subscribe(
                        filter_=RpcTransactionLogsFilterMentions(self.program_id), commitment=self.commitment
                    )
                    self.ws_connected = True
                    attempt = 0
                    wake.set()  # anything sent while we were not subscribed
                    while True:
                        await ws.recv()
                        wake.set()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - solders parse errors are pyo3 panics (BaseException)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self.ws_connected = False
                attempt += 1
                log.warning("solana logs subscription lost; polling meanwhile", chain=self.name, url=url,
                            error=f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(min(5.0, 0.2 * attempt))
            finally:
                self.ws_connected = False

    async def _signatures_after(self, until: Signature | None) -> list[tuple[Signature, Any]]:
        """The program's signatures after `until` at the commitment, oldest first."""
        newest_first: list[tuple[Signature, Any]] = []
        before: Signature | None = None
        while True:
            page = (await self._rpc("getSignaturesForAddress", lambda c, b=before: c.get_signatures_for_address(
                self.program_id, before=b, until=until, limit=_SIGNATURE_PAGE, commitment=self.commitment))).value
            newest_first += [(item.signature, item.err) for item in page]
            if len(page) < _SIGNATURE_PAGE:
                break
            before = page[-1].signature
        newest_first.reverse()
        return newest_first

    async def _transaction(self, signature: Signature) -> Any:
        return (await self._rpc("getTransaction", lambda c: c.get_transaction(
            signature, commitment=self.commitment, max_supported_transaction_version=0))).value

    async def _observations(self, signature: Signature, cursor_before: str) -> list[Observation] | None:
        """The checked envelopes of one transaction; None when the node does not serve it at the
        commitment (yet), [] when it failed or sent nothing."""
        tx = await self._transaction(signature)
        if tx is None:
            return None
        meta = tx.transaction.meta
        if meta is None or meta.err is not None:
            return []
        envelopes: list[Envelope] = []
        for raw in sent_envelopes_of(meta.log_messages or [], self.program_id):
            try:
                envelope = Envelope.decode(raw)
            except EnvelopeError as exc:
                log.error("undecodable envelope in a Send; skipped", chain=self.name, tx=str(signature), error=str(exc))
                continue
            if envelope.src_domain != self.domain:
                log.error("envelope with another source domain; skipped (is program_id or domain misconfigured?)",
                          chain=self.name, tx=str(signature), src_domain=envelope.src_domain, domain=self.domain)
                continue
            envelopes.append(envelope)
        # Only the last envelope of a transaction moves the cursor past it: resuming from an earlier
        # one re-reads the whole transaction (at-least-once), never skips its remaining envelopes.
        return [
            Observation(envelope=e, source_tx=str(signature), position=tx.slot,
                        cursor=str(signature) if i == len(envelopes) - 1 else cursor_before,
                        block_time=tx.block_time)
            for i, e in enumerate(envelopes)
        ]

    async def reobserve(self, source_tx: str) -> list[Observation]:
        try:
            signature = Signature.from_string(source_tx)
        except ValueError:
            raise SolanaAdapterError(f"{source_tx!r} is not a base58 Solana transaction signature") from None
        return await self._observations(signature, cursor_before="") or []

    async def find_nonce(self, nonce: int) -> Observation | None:
        before: Signature | None = None
        while True:
            page = (await self._rpc("getSignaturesForAddress", lambda c, b=before: c.get_signatures_for_address(
                self.program_id, before=b, limit=_SIGNATURE_PAGE, commitment=self.commitment))).value
            for item in page:
                if item.err is not None:
                    continue
                observations = await self._observations(item.signature, cursor_before="") or []
                for observation in observations:
                    if observation.envelope.nonce == nonce:
                        return observation
                # Nonces grow with time; once older than the target it is not further back.
                if observations and min(o.envelope.nonce for o in observations) < nonce:
                    return None
            if len(page) < _SIGNATURE_PAGE:
                return None
            before = page[-1].signature

    # ----- destination side ----------------------------------------------------------------

    async def is_delivered(self, message_id: bytes) -> bool:
        address = receipt_address(self.program_id, message_id)[0]
        account = (await self._rpc("getAccountInfo", lambda c: c.get_account_info(
            address, commitment=self.commitment))).value
        if account is None or account.owner != self.program_id:
            return False
        try:
            return DeliveryReceipt.decode(bytes(account.data)).message_id == message_id
        except SolanaProgramError:
            return False

    def _require_signer(self) -> Keypair:
        if self.signer is None:
            raise SolanaAdapterError(
                f"chains.{self.name}.signer is not set: the adapter needs a funded keypair to send transactions"
            )
        return self.signer

    async def _send(self, instructions: Sequence[Instruction], *, skip_preflight: bool) -> tuple[str, int]:
        signer = self._require_signer()
        latest = (await self._rpc("getLatestBlockhash", lambda c: c.get_latest_blockhash(Confirmed))).value
        tx = VersionedTransaction(
            Message.new_with_blockhash(list(instructions), signer.pubkey(), latest.blockhash), [signer]
        )
        # Resending the same signed bytes to another endpoint after a connection error is harmless:
        # a validator executes one signature once.
        opts = TxOpts(skip_preflight=skip_preflight, preflight_commitment=Confirmed)
        signature = (await self._rpc("sendTransaction", lambda c: c.send_raw_transaction(bytes(tx), opts))).value
        self._last_valid[str(signature)] = latest.last_valid_block_height
        while len(self._last_valid) > _REMEMBERED_BLOCKHASHES:
            del self._last_valid[next(iter(self._last_valid))]  # the oldest: long settled
        return str(signature), latest.last_valid_block_height

    async def submit(self, delivery: SignedDelivery) -> str:
        raw = delivery.envelope.encode()
        attestation = Attestation.for_envelope(raw, delivery.epoch, delivery.signature)
        ix = deliver_ix(self.program_id, self._require_signer().pubkey(), attestation, raw)
        # Deliveries to the task board carry its accounts (board, task, payout); imported here
        # because adapters.solana.taskboard builds on this module.
        from adapters.solana.taskboard import board_delivery_accounts

        extra = board_delivery_accounts(self.program_id, delivery.envelope)
        if extra:
            ix = Instruction(ix.program_id, ix.data, [*ix.accounts, *extra])
        # No preflight: a refused delivery (already delivered by another relayer, bad signature) lands
        # as a failed transaction whose program error delivery_status reports.
        signature, _ = await self._send([set_compute_unit_limit(DELIVER_CU_LIMIT), ix], skip_preflight=True)
        log.info("solana delivery submitted", chain=self.name, msg_id=delivery.envelope.message_id.hex(), tx=signature)
        return signature

    async def delivery_status(self, tx_id: str) -> DeliveryStatus:
        signature = Signature.from_string(tx_id)
        status = await self._status(signature)
        if status is None:
            last_valid = self._last_valid.get(tx_id)
            if last_valid is None:
                return DeliveryStatus(DeliveryState.PENDING, "unknown to the node and to this adapter")
            height = (await self._rpc("getBlockHeight", lambda c: c.get_block_height(self.commitment))).value
            if height <= last_valid:
                return DeliveryStatus(DeliveryState.PENDING, f"not seen yet; blockhash valid until height {last_valid}")
            # The blockhash expired at our commitment: it can no longer land. Ask once more in case
            # it landed just before.
            if await self._status(signature) is None:
                return DeliveryStatus(DeliveryState.DROPPED,
                                      f"blockhash expired (height {height} > last valid {last_valid})")
            status = await self._status(signature)
            if status is None:
                return DeliveryStatus(DeliveryState.PENDING, "status flapping")
        reached = _level(status.confirmation_status) >= _LEVELS[self.commitment]
        if not reached:
            return DeliveryStatus(DeliveryState.PENDING,
                                  f"at {status.confirmation_status}, waiting for {self.commitment}")
        if status.err is not None:
            return DeliveryStatus(DeliveryState.REVERTED, describe_transaction_error(status.err))
        return DeliveryStatus(DeliveryState.CONFIRMED, f"slot {status.slot}")

    async def _status(self, signature: Signature) -> Any:
        return (await self._rpc("getSignatureStatuses", lambda c: c.get_signature_statuses(
            [signature], search_transaction_history=True))).value[0]

    # ----- SDK -----------------------------------------------------------------------------

    async def send_message(self, dst_domain: int, receiver: bytes, kind: int, payload: bytes,
                           timeout: float = 60.0) -> tuple[Envelope, str]:
        """Sends one message through the gateway as the adapter's signer; waits until confirmed and
        returns the envelope the program built (with its nonce) and the transaction signature."""
        signer = self._require_signer()
        Envelope(kind=kind, nonce=0, src_domain=self.domain, src_sender=bytes(signer.pubkey()),
                 dst_domain=dst_domain, dst_receiver=receiver, payload=payload)  # refuse bad input before paying
        ix = send_ix(self.program_id, signer.pubkey(), dst_domain=dst_domain, receiver=receiver, kind=kind,
                     payload=payload)
        try:
            signature, last_valid = await self._send([set_compute_unit_limit(SEND_CU_LIMIT), ix], skip_preflight=False)
        except Exception as exc:
            if _is_retryable(exc):
                raise
            raise SolanaAdapterError(f"{self.name}: the gateway refused the message: {exc}") from exc
        sig = Signature.from_string(signature)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self._status(sig)
            if status is not None and _level(status.confirmation_status) >= 1:
                break
            if loop.time() > deadline:
                raise SolanaAdapterError(f"{self.name}: send {signature} not confirmed within {timeout:.0f}s")
            await asyncio.sleep(0.1)
        if status.err is not None:
            raise SolanaAdapterError(f"{self.name}: send {signature} failed: {describe_transaction_error(status.err)}")
        tx = (await self._rpc("getTransaction", lambda c: c.get_transaction(
            sig, commitment=Confirmed, max_supported_transaction_version=0))).value
        envelopes = sent_envelopes_of(tx.transaction.meta.log_messages or [], self.program_id)
        if len(envelopes) != 1:
            raise SolanaAdapterError(f"{self.name}: send {signature} emitted {len(envelopes)} envelopes, expected 1")
        envelope = Envelope.decode(envelopes[0])
        returned = tx.transaction.meta.return_data
        if returned is not None and bytes(returned.data)[:32] != envelope.message_id:
            raise SolanaAdapterError(f"{self.name}: send {signature}: logged envelope and returned message id differ")
        return envelope, signature

    async def delivery_tx(self, message_id: bytes) -> str | None:
        """The transaction that delivered `message_id` (the oldest successful one touching its
        receipt), at the adapter's commitment; None if it was not delivered."""
        address = receipt_address(self.program_id, message_id)[0]
        found: str | None = None
        before: Signature | None = None
        while True:
            page = (await self._rpc("getSignaturesForAddress", lambda c, b=before: c.get_signatures_for_address(
                address, before=b, limit=_SIGNATURE_PAGE, commitment=self.commitment))).value
            for item in page:
                if item.err is None:
                    found = str(item.signature)
            if len(page) < _SIGNATURE_PAGE:
                return found
            before = page[-1].signature
