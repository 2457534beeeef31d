"""Solana PubSub over WebSocket: logs, signature, account, program, slot and root subscriptions.

Notifications follow the ledger's commitments: a subscription at `confirmed` hears about a slot's
transactions when that slot becomes confirmed, one at `finalized` when it is finalized.
Each connection has a bounded outgoing queue; a client that does not read is disconnected rather
than letting the server's memory grow.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog
from aiohttp import WSMsgType, web
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    LogsNotification,
    LogsNotificationResult,
    RpcLogsResponse,
    RpcResponseContext,
    RpcSignatureResponse,
    SignatureNotification,
    SignatureNotificationResult,
)

from adapters.solana_localnet.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    invalid_params,
)
from adapters.solana_localnet.ledger import COMMITMENTS, FINALIZED, PROCESSED, Ledger, TxRecord
from adapters.solana_localnet.rpc import (
    SOLANA_CORE_VERSION,
    _account_filter,
    _commitment,
    _config,
    _param,
    _pubkey,
    _signature,
    encode_account,
)

# Lazy: the CLI configures logging after these modules are imported (relay.log.get_logger binds at once).
log = structlog.get_logger("solana_localnet.pubsub")

MAX_QUEUED_MESSAGES = 10_000
MAX_SUBSCRIPTIONS_PER_CONNECTION = 10_000
MAX_WS_MESSAGE_BYTES = 1 << 20


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED_MESSAGES))
    subscriptions: set[int] = field(default_factory=set)
    overflowed: bool = False
    transport: asyncio.BaseTransport | None = None

    def send(self, text: str) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("websocket client is not reading; disconnecting it", queued=self.queue.qsize())
            # The writer may be stuck on a full socket buffer, so a polite close frame might never go out.
            if self.transport is not None:
                self.transport.abort()


@dataclass(eq=False)
class _Subscription:
    id: int
    topic: str
    connection: _Connection
    commitment: str
    key: Any = None  # Pubkey or Signature the subscription watches, None for "all"
    encoding: str = "base64"
    filters: list[Callable[[bytes], bool]] = field(default_factory=list)


def _notification(method: str, params_json: str) -> str:
    return f'{{"jsonrpc":"2.0","method":"{method}","params":{params_json}}}'


def _reply(request_id: Any, result: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": request_id}, separators=(",", ":"))


def _error(request_id: Any, error: RpcError) -> str:
    return json.dumps({"jsonrpc": "2.0", "error": error.to_obj(), "id": request_id}, separators=(",", ":"))


def _context(slot: int) -> dict[str, Any]:
    return {"apiVersion": SOLANA_CORE_VERSION, "slot": slot}


class PubSub:
    """LedgerListener that fans ledger events out to WebSocket subscribers."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._ids = itertools.count(1)
        self._subscriptions: dict[int, _Subscription] = {}
        self._connections: set[_Connection] = set()
        self._last_root = ledger.slot(FINALIZED)
        ledger.add_listener(self)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # ----- connections -----

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # compress=False: permessage-deflate cost the server a zlib flush per notification (a burst
        # sends one per transaction to every subscriber) to save bytes on a loopback or LAN link.
        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE_BYTES, heartbeat=30, timeout=2.0, compress=False)
        await ws.prepare(request)
        connection = _Connection(ws, transport=request.transport)
        self._connections.add(connection)
        writer = asyncio.create_task(self._write(connection))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_text(connection, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._on_text(connection, message.data.decode("utf-8", "replace"))
                elif message.type == WSMsgType.ERROR:
                    break
                if connection.overflowed:
                    break
        except ConnectionResetError:
            pass
        finally:
            self._drop(connection)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if not ws.closed:
                await ws.close()
        return ws

    async def _write(self, connection: _Connection) -> None:
        try:
            while True:
                text = await connection.queue.get()
                await connection.ws.send_str(text)
                if connection.overflowed:
                    await connection.ws.close(code=1008, message=b"client too slow")
                    return
        except (ConnectionResetError, RuntimeError):
            # The peer vanished mid-send; the reader side notices and cleans up.
            await connection.ws.close()

    def _drop(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        for sub_id in connection.subscriptions:
            self._subscriptions.pop(sub_id, None)
        connection.subscriptions.clear()

    async def close_all(self) -> None:
        for connection in list(self._connections):
            await connection.ws.close(code=1001, message=b"server shutting down")

    # ----- requests -----

    def _on_text(self, connection: _Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's json parses
            connection.send(_error(None, RpcError(PARSE_ERROR, "Parse error")))
            return
        requests = request if isinstance(request, list) else [request]
        if not requests:
            connection.send(_error(None, RpcError(INVALID_REQUEST, "Invalid request")))
            return
        for item in requests:
            self._on_request(connection, item)

    def _on_request(self, connection: _Connection, request: Any) -> None:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            connection.send(_error(None, RpcError(INVALID_REQUEST, "Invalid request")))
            return
        request_id = request.get("id")
        method = request["method"]
        params = request.get("params") or []
        try:
            if not isinstance(params, list):
                raise invalid_params("Invalid params: expected an array of parameters")
            if method.endswith("Unsubscribe"):
                result: Any = self._unsubscribe(connection, method[: -len("Unsubscribe")], params)
                connection.send(_reply(request_id, result))
                return
            subscribe = getattr(self, f"_subscribe_{method[: -len('Subscribe')]}", None)
            if not method.endswith("Subscribe") or subscribe is None:
                raise RpcError(METHOD_NOT_FOUND, "Method not found")
            if len(connection.subscriptions) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
                raise RpcError(INVALID_REQUEST, "Internal error: too many subscriptions on this connection")
            subscription = subscribe(connection, params)
        except RpcError as exc:
            connection.send(_error(request_id, exc))
            return
        except Exception:
            log.exception("websocket request failed", method=method)
            connection.send(_error(request_id, RpcError(INTERNAL_ERROR, "Internal error")))
            return
        self._subscriptions[subscription.id] = subscription
        connection.subscriptions.add(subscription.id)
        connection.send(_reply(request_id, subscription.id))
        if subscription.topic == "signature":
            self._signature_already_there(subscription)

    def _unsubscribe(self, connection: _Connection, topic: str, params: list[Any]) -> bool:
        sub_id = _param(params, 0, "subscription id")
        if not isinstance(sub_id, int) or isinstance(sub_id, bool):
            raise invalid_params("Invalid params: invalid type, expected a subscription id (u64)")
        subscription = self._subscriptions.get(sub_id)
        if subscription is None or subscription.connection is not connection or subscription.topic != topic:
            raise RpcError(INVALID_PARAMS, "Invalid subscription id.")
        self._remove(subscription)
        return True

    def _remove(self, subscription: _Subscription) -> None:
        self._subscriptions.pop(subscription.id, None)
        subscription.connection.subscriptions.discard(subscription.id)

    def _new(self, topic: str, connection: _Connection, commitment: str, **kw: Any) -> _Subscription:
        return _Subscription(next(self._ids), topic, connection, commitment, **kw)

    def _subscribe_logs(self, connection: _Connection, params: list[Any]) -> _Subscription:
        spec = _param(params, 0, "filter")
        commitment = _commitment(_config(params, 1))
        if spec in ("all", "allWithVotes"):
            return self._new("logs", connection, commitment)
        if isinstance(spec, dict) and isinstance(spec.get("mentions"), list):
            if len(spec["mentions"]) != 1:
                raise invalid_params("Invalid Request: Only 1 address supported")
            return self._new("logs", connection, commitment, key=_pubkey(spec["mentions"][0]))
        raise invalid_params('Invalid params: filter must be "all", "allWithVotes" or {"mentions": [address]}')

    def _subscribe_signature(self, connection: _Connection, params: list[Any]) -> _Subscription:
        signature = _signature(_param(params, 0, "signature"))
        commitment = _commitment(_config(params, 1))
        return self._new("signature", connection, commitment, key=signature)

    def _subscribe_account(self, connection: _Connection, params: list[Any]) -> _Subscription:
        pubkey = _pubkey(_param(params, 0, "pubkey"))
        config = _config(params, 1)
        encoding = config.get("encoding") or "binary"
        encode_account_check(encoding)
        return self._new("account", connection, _commitment(config), key=pubkey, encoding=encoding)

    def _subscribe_program(self, connection: _Connection, params: list[Any]) -> _Subscription:
        program_id = _pubkey(_param(params, 0, "program id"))
        config = _config(params, 1)
        encoding = config.get("encoding") or "binary"
        encode_account_check(encoding)
        raw_filters = config.get("filters") or []
        if not isinstance(raw_filters, list):
            raise invalid_params("Invalid params: filters must be a sequence")
        filters = [_account_filter(f) for f in raw_filters]
        return self._new(
            "program", connection, _commitment(config), key=program_id, encoding=encoding, filters=filters
        )

    def _subscribe_slot(self, connection: _Connection, params: list[Any]) -> _Subscription:
        return self._new("slot", connection, PROCESSED)

    def _subscribe_root(self, connection: _Connection, params: list[Any]) -> _Subscription:
        return self._new("root", connection, FINALIZED)

    # ----- ledger events -----

    def _of_topic(self, topic: str, commitment: str | None = None) -> list[_Subscription]:
        return [
            s
            for s in self._subscriptions.values()
            if s.topic == topic and (commitment is None or s.commitment == commitment)
        ]

    def on_transaction(self, record: TxRecord) -> None:
        self._notify_transaction(PROCESSED, record)
        self._notify_accounts(PROCESSED, record.slot, set(record.written))

    def on_commitment(self, commitment: str, slot: int) -> None:
        for record in self.ledger.records_in_slot(slot):
            self._notify_transaction(commitment, record)
        self._notify_accounts(commitment, slot, self.ledger.accounts_written_in(slot))

    def on_slot(self, slot: int, parent: int, root: int) -> None:
        subs = self._of_topic("slot")
        if subs:
            result = {"parent": parent, "root": root, "slot": slot}
            for sub in subs:
                sub.connection.send(
                    _notification("slotNotification", json.dumps({"result": result, "subscription": sub.id}))
                )
        if root <= self._last_root:
            return  # a validator notifies roots only when the root moves
        self._last_root = root
        for sub in self._of_topic("root"):
            sub.connection.send(
                _notification("rootNotification", json.dumps({"result": root, "subscription": sub.id}))
            )

    def _notify_transaction(self, commitment: str, record: TxRecord) -> None:
        logs_subs = self._of_topic("logs", commitment)
        if logs_subs:
            keys = set(record.account_keys)
            value = RpcLogsResponse(record.signature, record.err, record.meta.logs())
            for sub in logs_subs:
                if sub.key is None or sub.key in keys:
                    params = LogsNotification(
                        LogsNotificationResult(value, RpcResponseContext(record.slot, SOLANA_CORE_VERSION)), sub.id
                    ).to_json()
                    sub.connection.send(_notification("logsNotification", params))
        for sub in self._of_topic("signature", commitment):
            if sub.key == record.signature:
                self._send_signature(sub, record)

    def _send_signature(self, sub: _Subscription, record: TxRecord) -> None:
        # solders' own serialisation: its parser rejects Agave's {"Custom":n} form in this notification.
        params = SignatureNotification(
            SignatureNotificationResult(
                RpcSignatureResponse(record.err), RpcResponseContext(record.slot, SOLANA_CORE_VERSION)
            ),
            sub.id,
        ).to_json()
        sub.connection.send(_notification("signatureNotification", params))
        self._remove(sub)  # signature subscriptions end after their one notification

    def _signature_already_there(self, sub: _Subscription) -> None:
        record = self.ledger.record(sub.key)
        if record is None:
            return
        reached = COMMITMENTS.index(self.ledger.commitment_of(record.slot))
        if reached >= COMMITMENTS.index(sub.commitment):
            self._send_signature(sub, record)

    def _notify_accounts(self, commitment: str, slot: int, written: set[Pubkey]) -> None:
        if not written:
            return
        for sub in self._of_topic("account", commitment):
            if sub.key in written:
                account = self.ledger.account_at_slot(sub.key, slot) if commitment != PROCESSED else (
                    self.ledger.get_account(sub.key, PROCESSED)
                )
                value = _encode(account, sub.encoding) if account else _closed_account()
                result = {"context": _context(slot), "value": value}
                sub.connection.send(
                    _notification("accountNotification", json.dumps({"result": result, "subscription": sub.id}))
                )
        for sub in self._of_topic("program", commitment):
            for pubkey in written:
                account = self.ledger.account_at_slot(pubkey, slot) if commitment != PROCESSED else (
                    self.ledger.get_account(pubkey, PROCESSED)
                )
                if account is None or account.owner != sub.key:
                    continue
                if not all(check(bytes(account.data)) for check in sub.filters):
                    continue
                value = {"account": _encode(account, sub.encoding), "pubkey": str(pubkey)}
                result = {"context": _context(slot), "value": value}
                sub.connection.send(
                    _notification("programNotification", json.dumps({"result": result, "subscription": sub.id}))
                )


def _encode(account: Any, encoding: str) -> dict[str, Any]:
    try:
        return encode_account(account, encoding, None)
    except RpcError:
        # base58 cannot carry more than 128 bytes; a notification has no error channel, so use base64.
        return encode_account(account, "base64", None)


def _closed_account() -> dict[str, Any]:
    # What a validator sends when a watched account is closed: an empty system-owned account.
    return {
        "data": ["", "base64"],
        "executable": False,
        "lamports": 0,
        "owner": "11111111111111111111111111111111",
        "rentEpoch": 0,
        "space": 0,
    }


def encode_account_check(encoding: str) -> None:
    if encoding not in ("binary", "base58", "base64", "jsonParsed"):
        raise invalid_params(f"Invalid params: unsupported account encoding `{encoding}` on this localnet; use base64")
