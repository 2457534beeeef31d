"""Talking to Solana nodes: the endpoint pool over a chain's `rpc_urls`, which errors are the
endpoint's fault (worth another endpoint) and which are the request's, commitment levels, keypairs,
and following an address's transactions (listing, then a logs subscription or polling to wake up).
Transactions are read in JSON-RPC batches: concurrent `SolanaRpc.transaction` callers share one POST of
up to TX_BATCH getTransaction requests (`transactions`), each caller getting its own answer or error.

Every RPC of the Solana package goes through a `SolanaRpc`: `call(what, fn)` where `fn` takes one
`AsyncClient`, failing over between the configured endpoints; `SolanaRpc.for_client(client)` wraps
one client a caller owns (deployment, tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import httpx2
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment, Confirmed
from solana.rpc.core import RPCException
from solana.rpc.websocket_api import SolanaWsClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.config import RpcTransactionLogsFilterMentions
from solders.rpc.errors import MinContextSlotNotReachedMessage, NodeUnhealthyMessage
from solders.rpc.requests import GetTransaction
from solders.rpc.responses import GetTransactionResp, batch_from_json
from solders.signature import Signature
from solders.transaction_status import TransactionConfirmationStatus

from adapters.endpoints import AllEndpointsFailed, EndpointPool
from relay.aio import wait_event
from relay.config import KeyRef
from relay.errors import ConfigError, TesseraError
from relay.interfaces import EndpointHealth
from relay.lifecycle import cancel_quietly
from relay.log import get_logger

__all__ = [
    "COMMITMENT_LEVELS",
    "SIGNATURE_PAGE",
    "LogsWaker",
    "SolanaAdapterError",
    "SolanaRpc",
    "commitment_level",
    "confirmation_level",
    "follow_address",
    "is_retryable",
    "load_keypair",
]

log = get_logger("adapters.solana.rpc")

T = TypeVar("T")

SIGNATURE_PAGE = 1000  # getSignaturesForAddress's maximum
SIGNATURE_STATUSES_MAX = 256  # getSignatureStatuses's maximum per call
MULTIPLE_ACCOUNTS_MAX = 100  # getMultipleAccounts' limit per request
TX_BATCH = 100  # getTransaction requests per JSON-RPC batch (one HTTP round trip)
TX_BATCHES_AT_ONCE = 2  # batches follow_address has in flight
SINGLE_READS_AT_ONCE = 16  # getTransaction calls at once to a node that refuses batches
COMMITMENT_LEVELS = {"processed": 0, "confirmed": 1, "finalized": 2}


# solana-py wraps every HTTP-level failure in its own exception, the cause attached.
_TRANSPORT_WRAPPERS = (SolanaRpcException,)


class SolanaAdapterError(TesseraError):
    """A Solana adapter operation could not be done; the message says what to fix."""


class BadBatchAnswer(SolanaAdapterError):
    """A node answered a JSON-RPC batch with an array that does not answer each request once: the
    endpoint's fault (is_retryable), so the pool tries another."""


def commitment_level(commitment: Commitment | str) -> int:
    """0, 1, 2 for processed, confirmed, finalized."""
    return COMMITMENT_LEVELS[str(commitment)]


def confirmation_level(status: Any) -> int:
    """The level a signature status reached (as `commitment_level`); -1 when it has none."""
    # solders' confirmation-status enum is not hashable: compare instead of a dict lookup.
    if status == TransactionConfirmationStatus.Finalized:
        return 2
    if status == TransactionConfirmationStatus.Confirmed:
        return 1
    return 0 if status == TransactionConfirmationStatus.Processed else -1


def is_retryable(exc: BaseException) -> bool:
    """The endpoint's fault (down, slow, rate-limited, failing, behind) is worth another endpoint; a
    JSON-RPC error (RPCException: bad request, preflight failure) is the request's."""
    if isinstance(exc, BadBatchAnswer):
        return True
    if isinstance(exc, RPCException):
        # A node that is behind answers with a JSON-RPC error, but another node may well answer.
        return bool(exc.args) and isinstance(exc.args[0], (NodeUnhealthyMessage, MinContextSlotNotReachedMessage))
    if isinstance(exc, _TRANSPORT_WRAPPERS):
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


def keypair_from_ref(ref: KeyRef, where: str) -> Keypair:
    """The keypair a KeyRef points at: an unencrypted key (load_keypair's formats), or a V3 keystore
    holding the keypair's 32-byte Ed25519 seed (`relay keys import --kind solana`), decrypted with
    its password."""
    if ref.keystore is None:
        return load_keypair(ref.read_text(), f"{where} ({ref.describe()})")
    # Imported here: the keystore format is Ethereum's (Web3 Secret Storage), and a Solana process
    # with unencrypted keys has no reason to load the Ethereum libraries.
    from eth_account import Account

    keystore, password = ref.read_keystore()
    try:
        seed = bytes(Account.decrypt(keystore, password))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{where} ({ref.describe()}) cannot be decrypted: {exc} (wrong password, or not a "
                          "V3 keystore)") from None
    keypair = Keypair.from_seed(seed)
    expected = keystore.get("solana_pubkey")
    if expected is not None and str(keypair.pubkey()) != expected:
        raise ConfigError(f"{where} ({ref.describe()}) decrypts to {keypair.pubkey()}, not the {expected} it "
                          "names: the keystore was edited or is not a Solana keystore")
    return keypair


def solana_keystore(key_text: str, password: str, where: str = "the key") -> tuple[dict, str]:
    """A V3 keystore holding an unencrypted Solana keypair's (load_keypair's formats) 32-byte seed,
    and the keypair's public key; the inverse of keypair_from_ref. The keystore names the public key
    (`solana_pubkey`) instead of an Ethereum address."""
    from eth_account import Account  # as in keypair_from_ref

    keypair = load_keypair(key_text, where)
    keystore = Account.encrypt(bytes(keypair.secret()), password, kdf="scrypt")
    keystore.pop("address", None)
    keystore["solana_pubkey"] = str(keypair.pubkey())
    return keystore, str(keypair.pubkey())


class SolanaRpc:
    """One chain's JSON-RPC endpoints behind the failover pool (adapters/endpoints.py): `rpc_urls`
    in order, failing over on transport errors, timeouts, 429/5xx and unhealthy nodes."""

    def __init__(self, name: str, rpc_urls: Sequence[str], *, timeout: float = 10.0, attempts: int = 4,
                 base_delay: float = 0.2) -> None:
        self.name = name
        self.pool: EndpointPool[AsyncClient] = EndpointPool(
            name, list(rpc_urls), lambda url: AsyncClient(url, timeout=timeout, max_transport_retries=0),
            is_retryable, attempts=attempts, base_delay=base_delay, timeout=timeout)
        self._owns_clients = True
        self._shared = _SharedReads(name)
        self._refuses_batches: set[int] = set()  # id() of clients whose node answered a batch with one error

    @classmethod
    def for_client(cls, name: str, client: AsyncClient, *, timeout: float = 10.0, owns_client: bool = False
                   ) -> "SolanaRpc":
        """Calls through one given client; `close` closes it only with `owns_client`."""
        rpc = cls.__new__(cls)
        rpc.name = name
        rpc.pool = EndpointPool(name, ["(given client)"], lambda _url: client, is_retryable, timeout=timeout)
        rpc._owns_clients = owns_client
        rpc._shared = _SharedReads(name)
        rpc._refuses_batches = set()
        return rpc

    async def close(self) -> None:
        if self._owns_clients:
            for client in self.pool.clients:
                await client.close()

    def health(self) -> list[EndpointHealth]:
        return self.pool.health()

    async def call(self, what: str, fn: Callable[[AsyncClient], Awaitable[T]]) -> T:
        return await self.pool.call(what, fn)

    # ----- reads shared by the gateway, the task board and the feed target ------------------

    async def account_data(self, address: Pubkey, owner: Pubkey, commitment: Commitment = Confirmed) -> bytes | None:
        """The data of `address` at `commitment` when `owner` owns it; None otherwise (an address
        someone only sent lamports to is not one of the owner's accounts)."""
        account = (await self.call("getAccountInfo", lambda c: c.get_account_info(
            address, commitment=commitment))).value
        if account is None or account.owner != owner:
            return None
        return bytes(account.data)

    async def signatures_page(self, address: Pubkey, commitment: Commitment, *, before: Signature | None = None,
                              until: Signature | None = None) -> list[Any]:
        """One page (newest first) of the successful and failed transactions mentioning `address`."""
        return (await self.call("getSignaturesForAddress", lambda c: c.get_signatures_for_address(
            address, before=before, until=until, limit=SIGNATURE_PAGE, commitment=commitment))).value

    async def signatures_after(self, address: Pubkey, until: Signature | None, commitment: Commitment
                               ) -> list[tuple[Signature, Any]]:
        """(signature, err) of every transaction mentioning `address` after `until`, oldest first."""
        newest_first: list[tuple[Signature, Any]] = []
        before: Signature | None = None
        while True:
            page = await self.signatures_page(address, commitment, before=before, until=until)
            newest_first += [(item.signature, item.err) for item in page]
            if len(page) < SIGNATURE_PAGE:
                break
            before = page[-1].signature
        newest_first.reverse()
        return newest_first

    async def transaction(self, signature: Signature, commitment: Commitment, *, encoding: str = "json") -> Any:
        """The transaction with its meta at `commitment`; None when the node does not serve it (yet).
        Callers asking at once (follow_address reading a burst) share one JSON-RPC batch of up to
        TX_BATCH getTransaction requests (`transactions`); each gets its own answer or error."""
        (found,) = await self._shared.get(
            ("getTransaction", str(commitment), encoding), [signature], TX_BATCH,
            lambda signatures: self.transactions(signatures, commitment, encoding=encoding))
        return found

    async def transactions(self, signatures: Sequence[Signature], commitment: Commitment, *,
                           encoding: str = "json") -> list[Any]:
        """Per signature (in order): the transaction with its meta at `commitment`, None when the
        node does not serve it (yet), or the RPCException the node answered for it. Up to TX_BATCH
        signatures go in one JSON-RPC batch (a node refusing batches is asked one by one). An error
        that is the endpoint's fault, for the batch or any item in it, fails the whole call over to
        the next endpoint (EndpointPool)."""
        if len(signatures) > TX_BATCH:
            raise SolanaAdapterError(f"{self.name}: at most {TX_BATCH} transactions per batch, not {len(signatures)}")
        if not signatures:
            return []
        return await self.call("getTransaction", lambda c: self._get_transactions(c, signatures, commitment, encoding))

    async def _get_transactions(self, client: AsyncClient, signatures: Sequence[Signature], commitment: Commitment,
                                encoding: str) -> list[Any]:
        config = client._get_transaction_body(signatures[0], encoding, commitment, 0).config
        if len(signatures) == 1 or id(client) in self._refuses_batches:
            return await _one_by_one(client, signatures, config)
        # Each request serialised by solders, joined here: solders' batch_to_json takes ~50x longer.
        body = "[" + ",".join(GetTransaction(signature, config, i).to_json()
                              for i, signature in enumerate(signatures)) + "]"
        try:
            raw = await client._provider.make_request_unparsed(RawBody(body))
        except SolanaRpcException as exc:
            cause = exc.__cause__
            if not (isinstance(cause, httpx2.HTTPStatusError) and 400 <= cause.response.status_code < 500
                    and cause.response.status_code != 429):
                raise
            raw = f"HTTP {cause.response.status_code}: {cause.response.text[:200]}"  # a proxy refusing batches
            answer: Any = None
        else:
            try:
                answer = json.loads(raw)
            except ValueError:
                raise BadBatchAnswer(f"{self.name}: a getTransaction batch was answered with invalid JSON") from None
        if not isinstance(answer, list):
            # A node that does not take batches (or not this big) answers one error object, or an
            # HTTP 4xx: read one by one, from now on with this endpoint.
            self._refuses_batches.add(id(client))
            log.warning("the node refused a getTransaction batch; reading one by one", chain=self.name,
                        answer=raw[:300])
            return await _one_by_one(client, signatures, config)
        wanted = list(range(len(signatures)))
        ids = [item.get("id") if isinstance(item, dict) else None for item in answer]
        if ids != wanted:
            # JSON-RPC lets a node answer a batch in any order: put the answers in request order.
            if (len(ids) != len(wanted) or set(ids) != set(wanted)
                    or any(type(i) is not int for i in ids)):  # noqa: E721 - True == 1, but is no id
                raise BadBatchAnswer(f"{self.name}: a batch of {len(signatures)} getTransaction requests was "
                                     f"answered with ids {ids[:10]}{'...' if len(ids) > 10 else ''}")
            by_id = dict(zip(ids, answer))
            raw = json.dumps([by_id[i] for i in wanted])
        try:
            parsed = batch_from_json(raw, [GetTransactionResp] * len(signatures))
        except BaseException as exc:  # noqa: BLE001 - a malformed item can make solders panic (BaseException)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise BadBatchAnswer(f"{self.name}: a getTransaction batch answer does not parse: {exc}"[:500]) from None
        return [_tx_value(item) for item in parsed]

    async def signature_status(self, signature: Signature) -> Any:
        """The node's status of one signature (searching its history too); None when unknown.
        Callers asking at once (the relayer confirming many deliveries) share one
        getSignatureStatuses of up to SIGNATURE_STATUSES_MAX signatures."""
        (status,) = await self._shared.get(("getSignatureStatuses",), [signature], SIGNATURE_STATUSES_MAX,
                                           self._statuses_of)
        return status

    async def _statuses_of(self, signatures: list[Signature]) -> list[Any]:
        async def read(client: AsyncClient) -> list[Any]:
            return _one_per_item(self.name, "getSignatureStatuses", len(signatures), (
                await client.get_signature_statuses(signatures, search_transaction_history=True)).value)
        return await self.call("getSignatureStatuses", read)

    async def accounts(self, addresses: Sequence[Pubkey], commitment: Commitment) -> list[Any]:
        """Each account (solders Account) or None, in order, at `commitment`. Callers asking at once
        (the relayer checking a batch's members) share one getMultipleAccounts of up to
        MULTIPLE_ACCOUNTS_MAX distinct addresses."""
        if len(addresses) > MULTIPLE_ACCOUNTS_MAX:
            raise SolanaAdapterError(f"{self.name}: at most {MULTIPLE_ACCOUNTS_MAX} accounts at once, not {len(addresses)}")

        async def read(keys: list[Pubkey]) -> list[Any]:
            async def ask(client: AsyncClient) -> list[Any]:
                return _one_per_item(self.name, "getMultipleAccounts", len(keys), (
                    await client.get_multiple_accounts(keys, commitment=commitment, encoding="base64")).value)
            return await self.call("getMultipleAccounts", ask)
        return await self._shared.get(("getMultipleAccounts", str(commitment)), list(addresses),
                                      MULTIPLE_ACCOUNTS_MAX, read)

    async def block_height(self, commitment: Commitment) -> int:
        return (await self.call("getBlockHeight", lambda c: c.get_block_height(commitment))).value


def _one_per_item(name: str, method: str, asked: int, value: Any) -> list[Any]:
    """A positional answer (getSignatureStatuses, getMultipleAccounts: no id per item) with exactly
    one item per item asked; any other count is the endpoint's fault (BadBatchAnswer: another
    endpoint is tried), never handed out by position (an item would reach another item's caller)."""
    items = list(value)
    if len(items) != asked:
        raise BadBatchAnswer(f"{name}: {method} answered {len(items)} items for {asked} asked")
    return items


class _SharedReads:
    """Items callers ask for within one turn of the event loop, read together: one call of `read`
    for up to `limit` distinct items per key (what is read: the method and its settings), each caller
    getting its own items' answers, or the error `read` gave for an item (an Exception in its place)
    or for all of them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._open: dict[Hashable, _Pending] = {}

    async def get(self, key: Hashable, items: Sequence[Any], limit: int,
                  read: Callable[[list[Any]], Awaitable[list[Any]]]) -> list[Any]:
        loop = asyncio.get_running_loop()
        pending = self._open.get(key)
        fresh = [i for i in dict.fromkeys(items) if pending is None or i not in pending.waiting]
        if pending is None or pending.loop is not loop or len(pending.waiting) + len(fresh) > limit:
            pending = self._open[key] = _Pending(loop)
            pending.task = loop.create_task(self._read(key, pending, read))
        for item in items:
            if item not in pending.waiting:
                pending.waiting[item] = loop.create_future()
        return list(await asyncio.shield(asyncio.gather(*(pending.waiting[i] for i in items))))

    async def _read(self, key: Hashable, pending: "_Pending",
                    read: Callable[[list[Any]], Awaitable[list[Any]]]) -> None:
        await asyncio.sleep(0)  # one turn of the loop: the callers started with the first one join it
        if self._open.get(key) is pending:
            del self._open[key]  # later callers start the next read
        items = list(pending.waiting)
        try:
            results = list(await read(items))
        except BaseException as exc:  # also a malformed answer: every caller gets the error, none waits for ever
            pending.fail(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if len(results) != len(items):
            # These reads answer by position (no id per item): a node answering fewer or more items
            # than asked has answered no one in particular. Handing the answers out by position would
            # give one caller another's (a status of a transaction never sent, another message's
            # receipt or replay bitmap): every caller gets the error instead.
            pending.fail(SolanaAdapterError(f"{self.name}: {key[0]} answered {len(results)} items for {len(items)} "
                                            "asked; none of them is used"))
            return
        for item, result in zip(items, results):
            future = pending.waiting[item]
            if isinstance(result, Exception):
                future.set_exception(result)
                future.exception()  # retrieved: a caller that went away must not warn
            else:
                future.set_result(result)


class _Pending:
    """Items callers are waiting for, read together."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[Any, asyncio.Future[Any]] = {}
        self.task: asyncio.Task[None] | None = None  # kept here: the loop holds tasks weakly

    def fail(self, exc: BaseException) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                future.exception()  # retrieved: a caller that went away must not warn


class RawBody:
    """A request body already serialised (a JSON-RPC batch), for solana-py's HTTP provider."""

    def __init__(self, text: str) -> None:
        self.text = text

    def to_json(self) -> str:
        return self.text


def _tx_value(parsed: Any) -> Any:
    """A getTransaction answer's value (None: not served), or the item's error as an RPCException;
    an error that is the endpoint's fault (unhealthy, behind) is raised, failing the call over."""
    if isinstance(parsed, GetTransactionResp):
        return parsed.value
    error = RPCException(parsed)
    if is_retryable(error):
        raise error
    return error


async def _one_by_one(client: AsyncClient, signatures: Sequence[Signature], config: Any) -> list[Any]:
    """getTransaction per signature, SINGLE_READS_AT_ONCE at a time (the path before batches)."""
    results: list[Any] = []
    for start in range(0, len(signatures), SINGLE_READS_AT_ONCE):
        chunk = signatures[start:start + SINGLE_READS_AT_ONCE]
        answers = await asyncio.gather(*(client._provider.make_request(GetTransaction(signature, config),
                                                                       GetTransactionResp) for signature in chunk),
                                       return_exceptions=True)
        for answer in answers:
            if isinstance(answer, RPCException) and not is_retryable(answer):
                results.append(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                results.append(answer.value)
    return results


class LogsWaker:
    """A `logsSubscribe` (mentions `program_id`, at the commitment) over the chain's `ws_urls` in
    turn, setting an event on every notification, so a watcher sleeps until something happened.
    `connected` says whether the subscription is up; while it is down the watcher polls."""

    def __init__(self, name: str, ws_urls: Sequence[str], program_id: Pubkey, commitment: Commitment) -> None:
        self.name = name
        self.ws_urls = list(ws_urls)
        self.program_id = program_id
        self.commitment = commitment
        self.connected = False

    async def run(self, wake: asyncio.Event) -> None:
        """Forever (until cancelled): subscribe, set `wake` on each notification, reconnect on loss."""
        attempt = 0
        while True:
            url = self.ws_urls[attempt % len(self.ws_urls)]
            try:
                async with SolanaWsClient(url) as ws:
                    await ws.logs_subscribe(
                        filter_=RpcTransactionLogsFilterMentions(self.program_id), commitment=self.commitment
                    )
                    self.connected = True
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
                self.connected = False
                attempt += 1
                log.warning("solana logs subscription lost; polling meanwhile", chain=self.name, url=url,
                            error=f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(min(5.0, 0.2 * attempt))
            finally:
                self.connected = False


READ_AHEAD = TX_BATCH * TX_BATCHES_AT_ONCE  # transactions follow_address reads at once


async def _nothing() -> list:
    return []


async def follow_address(
    rpc: SolanaRpc,
    address: Pubkey,
    cursor: str | None,
    read: Callable[[Signature, str], Awaitable[list[T] | None]],
    *,
    commitment: Commitment,
    logs: LogsWaker | None,
    poll_interval: float,
    idle_poll_interval: float,
    what: str,
) -> AsyncIterator[T]:
    """What `read(signature, cursor_before)` finds in each successful transaction mentioning
    `address`, oldest first, after the transaction `cursor` names (None or "": from the oldest the
    node still has). `read` returns None when the node does not serve the transaction at the
    commitment (yet): the follower stays on it. Runs forever; RPC outages are logged and retried.
    Idle, it waits for `logs` (or polls every `poll_interval` while that is down or absent, every
    `idle_poll_interval` otherwise)."""
    last = Signature.from_string(cursor) if cursor else None
    wake = asyncio.Event()
    waker = asyncio.create_task(logs.run(wake)) if logs is not None and logs.ws_urls else None
    failures = 0
    try:
        while True:
            wake.clear()
            try:
                pending = await rpc.signatures_after(address, last, commitment)
            except (AllEndpointsFailed, RPCException) as exc:
                # Forever means through outages too: log, back off, try again.
                failures += 1
                log.error(f"cannot list {what} transactions; retrying", chain=rpc.name, error=str(exc)[:300],
                          failures=failures)
                await asyncio.sleep(min(30.0, poll_interval * 2 ** min(failures, 5)))
                continue
            failures = 0
            caught_up = True
            # Transactions are read READ_AHEAD at a time (the reads' getTransaction calls share
            # TX_BATCH-sized JSON-RPC batches: SolanaRpc.transaction) and their findings yielded
            # strictly in order.
            position = 0
            while caught_up and position < len(pending):
                window = pending[position:position + READ_AHEAD]
                befores, before = [], last
                for signature, _err in window:
                    befores.append(str(before) if before else "")
                    before = signature
                reads = await asyncio.gather(*(
                    read(signature, cursor_before) if err is None else _nothing()
                    for (signature, err), cursor_before in zip(window, befores)), return_exceptions=True)
                for (signature, err), found in zip(window, reads):
                    if err is None:  # a failed transaction changed nothing
                        if isinstance(found, (AllEndpointsFailed, RPCException)):
                            # Never skip a transaction we could not read: stay on it (loudly) until a
                            # node serves it.
                            log.error(f"cannot read a {what} transaction; retrying it", chain=rpc.name,
                                      tx=str(signature), error=str(found)[:300])
                            found = None
                        elif isinstance(found, BaseException):
                            raise found
                        if found is None:  # not served (yet) at the commitment: next round
                            caught_up = False
                            break
                        for item in found:
                            yield item
                    last = signature
                position += len(window)
            if not caught_up:
                await asyncio.sleep(poll_interval)
                continue
            # Idle: the subscription wakes us; polling is the fallback when it is down.
            timeout = idle_poll_interval if logs is not None and logs.connected else poll_interval
            await wait_event(wake, timeout)
    finally:
        await cancel_quietly(waker)
