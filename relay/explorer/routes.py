"""The explorer's routes on the relayer's HTTP API.

    GET /                              -> /explorer/
    GET /explorer/                     the page (static HTML + JS + CSS shipped in relay/explorer/static)
    GET /explorer/config.json          chains, committee, whether a feed server is configured
    GET /v1/search?q=                  a message id, task id or source transaction -> messages + tasks
    GET /v1/tasks/{task_id}            a task from the messages that carry it
    GET /v1/messages/{id}/signers      which members signed (asks each member's GET /v1/partials)
    GET /v1/messages/{id}/events       SSE: the message now, then every change
    GET /v1/stream                     SSE: every message change (`message` events)
    GET /explorer/api/feeds...         the feed server's /v1/feeds, history and stream, passed through
                                       (same origin for the page; the feed server sends no CORS headers)

Live updates come from `Relayer.updates`, which the pipeline publishes to where it applies outcomes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import aiohttp
from aiohttp import web

from attest.committee import Committee
from relay.explorer.views import decode_payload, message_json, task_id_of, task_json
from relay.feeds.sse import encode_comment, encode_event
from relay.pipeline import Relayer
from relay.store import MessageRecord

STATIC = Path(__file__).with_name("static")
KEEPALIVE_S = 15.0
SIGNERS_TIMEOUT_S = 2.0
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_CLOSING = web.AppKey("explorer_closing", asyncio.Event)
_SESSION = web.AppKey("explorer_session", aiohttp.ClientSession)
T = TypeVar("T")


class _Closed(Exception):
    """The server is shutting down: end the stream."""


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _id32(text: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip().removeprefix("0x").removeprefix("0X"))
    except ValueError:
        value = b""
    if len(value) != 32:
        raise _bad_request(f"{what} must be 32 bytes of hex (0x-prefixed or not)")
    return value


async def _or_closing(aw: Awaitable[T], closing: asyncio.Event, timeout: float | None = None) -> T | None:
    """`aw`'s result; None after `timeout`; _Closed when the server shuts down first."""
    task = asyncio.ensure_future(aw)
    closed = asyncio.create_task(closing.wait())
    try:
        done, _ = await asyncio.wait({task, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
    if task in done:
        return task.result()
    task.cancel()
    if closed in done:
        raise _Closed
    return None


class Explorer:
    def __init__(self, relayer: Relayer, committee: Committee | None = None, feed_server_url: str | None = None) -> None:
        self.relayer = relayer
        self.committee = committee
        self.feed_server_url = feed_server_url.rstrip("/") if feed_server_url else None

    @property
    def chains(self) -> Mapping[int, str]:
        return {domain: adapter.name for domain, adapter in self.relayer.adapters.items()}

    def message(self, record: MessageRecord) -> dict:
        return message_json(record, self.chains)

    # --- search -----------------------------------------------------------------------------------

    async def search(self, query: str) -> dict:
        store = self.relayer.store
        text = query.strip()
        records: list[MessageRecord] = []
        hex_text = text.removeprefix("0x").removeprefix("0X")
        if len(hex_text) == 64 and all(c in "0123456789abcdefABCDEF" for c in hex_text):
            record = await store.get(bytes.fromhex(hex_text))  # a message id (a task id is its request's)
            if record is not None:
                records.append(record)
        if not records:
            records = await store.by_source_tx(text)
        task_ids: list[bytes] = []
        for record in records:
            decoded, _ = decode_payload(record.kind, record.decoded.payload)
            task_id = task_id_of(record, decoded)
            if task_id is not None and task_id not in task_ids:
                task_ids.append(task_id)
        if not records and len(hex_text) == 64:  # a task whose request this relayer never carried
            task_ids.append(bytes.fromhex(hex_text))
        tasks = [t for t in [await task_json(store, tid, self.chains) for tid in task_ids] if t is not None]
        return {"query": text, "messages": [self.message(r) for r in records], "tasks": tasks}

    async def signers(self, message_id: bytes) -> dict:
        """Each member's answer for this message: signed (its partial exists), refused (it checked
        and will not sign), not signed yet, or unreachable. Read-only for the members."""
        if self.committee is None:
            return {"members": [], "detail": "no committee configured"}
        session = self._session

        async def ask(index: int, endpoint: str) -> dict:
            url = f"{endpoint.rstrip('/')}/v1/partials/0x{message_id.hex()}"
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=SIGNERS_TIMEOUT_S)) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                return {"index": index, "status": "unreachable", "detail": type(exc).__name__}
            detail = body.get("error", "") if isinstance(body, dict) else ""
            match status:
                case 200:
                    return {"index": index, "status": "signed", "epoch": body.get("epoch")}
                case 403:
                    return {"index": index, "status": "refused", "detail": detail}
                case _:
                    return {"index": index, "status": "not signed", "detail": detail}

        members = await asyncio.gather(*(ask(m.index, m.endpoint) for m in self.committee.members))
        return {"threshold": self.committee.t, "n": self.committee.n, "epoch": self.committee.epoch,
                "members": list(members)}

    # --- HTTP -------------------------------------------------------------------------------------

    def add_to(self, app: web.Application) -> None:
        app[_CLOSING] = asyncio.Event()
        app.on_startup.append(self._open)
        app.on_shutdown.append(self._closing)  # before connections are closed: streams end at once
        app.on_cleanup.append(self._close)
        app.router.add_get("/", self._root)
        app.router.add_get("/explorer", self._root)
        app.router.add_get("/explorer/", self._index)
        app.router.add_get("/explorer/config.json", self._config)
        app.router.add_static("/explorer/static", STATIC)
        app.router.add_get("/v1/search", self._search)
        app.router.add_get("/v1/tasks/{task_id}", self._task)
        app.router.add_get("/v1/messages/{message_id}/signers", self._signers)
        app.router.add_get("/v1/messages/{message_id}/events", self._message_events)
        app.router.add_get("/v1/stream", self._stream)
        app.router.add_get("/explorer/api/feeds", self._feeds)
        app.router.add_get("/explorer/api/feeds/history", self._feed_history)
        app.router.add_get("/explorer/api/feeds/stream", self._feed_stream)

    async def _open(self, app: web.Application) -> None:
        self._app = app
        app[_SESSION] = aiohttp.ClientSession()

    @property
    def _session(self) -> aiohttp.ClientSession:
        return self._app[_SESSION]

    async def _closing(self, app: web.Application) -> None:
        app[_CLOSING].set()

    async def _close(self, app: web.Application) -> None:
        await app[_SESSION].close()

    async def _root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/explorer/")

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _config(self, request: web.Request) -> web.Response:
        committee = self.committee
        return web.json_response({
            "chains": {str(domain): name for domain, name in self.chains.items()},
            "committee": {"t": committee.t, "n": committee.n, "epoch": committee.epoch} if committee else None,
            "feeds": self.feed_server_url is not None,
        })

    async def _search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()
        if not query or len(query) > 200:
            raise _bad_request("q must be a message id, a task id or a source transaction (hash or signature)")
        found = await self.search(query)
        status = 200 if found["messages"] or found["tasks"] else 404
        if status == 404:
            found["error"] = ("nothing known by that id or source transaction here yet: a message appears once "
                              "its source transaction is final")
        return web.json_response(found, status=status)

    async def _task(self, request: web.Request) -> web.Response:
        task = await task_json(self.relayer.store, _id32(request.match_info["task_id"], "task id"), self.chains)
        if task is None:
            return web.json_response({"error": "unknown task id"}, status=404)
        return web.json_response(task)

    async def _signers(self, request: web.Request) -> web.Response:
        return web.json_response(await self.signers(_id32(request.match_info["message_id"], "message id")))

    async def _message_events(self, request: web.Request) -> web.StreamResponse:
        message_id = _id32(request.match_info["message_id"], "message id")
        return await self._sse(request, {message_id})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        ids = {_id32(part, "id") for value in request.query.getall("id", []) for part in value.split(",") if part}
        return await self._sse(request, ids or None)

    async def _sse(self, request: web.Request, ids: set[bytes] | None) -> web.StreamResponse:
        """`message` events (the message's explorer JSON) for every change of the messages in `ids`
        (all with None); for named ids, their current state first."""
        closing = request.app[_CLOSING]
        store = self.relayer.store
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        with self.relayer.updates.subscribe() as queue:
            try:
                await response.write(encode_event(retry=1000))
                for message_id in sorted(ids or ()):
                    record = await store.get(message_id)
                    if record is not None:
                        await response.write(encode_event(json.dumps(self.message(record)), event="message"))
                while True:
                    message_id = await _or_closing(queue.get(), closing, KEEPALIVE_S)
                    if message_id is None:
                        await response.write(encode_comment("keepalive"))
                        continue
                    if ids is not None and message_id not in ids:
                        continue
                    record = await store.get(message_id)
                    if record is not None:
                        await response.write(encode_event(json.dumps(self.message(record)), event="message"))
            except (_Closed, ConnectionError):  # shutting down, or the reader went away
                pass
        return response

    # --- the feed server, passed through ------------------------------------------------------------

    def _feed_url(self, path: str) -> str:
        if self.feed_server_url is None:
            raise web.HTTPNotFound(text=json.dumps({"error": "no [feed_server] in the relayer's config"}),
                                   content_type="application/json")
        return self.feed_server_url + path

    async def _forward(self, url: str, params: Mapping[str, str] | None = None) -> web.Response:
        try:
            async with self._session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return web.json_response({"error": f"the feed server does not answer ({type(exc).__name__})"}, status=502)

    async def _feeds(self, request: web.Request) -> web.Response:
        return await self._forward(self._feed_url("/v1/feeds"))

    async def _feed_history(self, request: web.Request) -> web.Response:
        feed_id = request.query.get("id", "")
        if not feed_id:
            raise _bad_request("id (a feed id) is required")
        params = {k: request.query[k] for k in ("from_round", "limit") if k in request.query}
        return await self._forward(self._feed_url(f"/v1/feeds/{quote(feed_id, safe='/')}/history"), params)

    async def _feed_stream(self, request: web.Request) -> web.StreamResponse:
        url = self._feed_url("/v1/stream")
        params = {"ids": request.query["ids"]} if request.query.get("ids") else None
        closing = request.app[_CLOSING]
        try:
            upstream = await self._session.get(url, params=params,
                                               timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return web.json_response({"error": f"the feed server does not answer ({type(exc).__name__})"}, status=502)
        async with upstream:
            if upstream.status != 200:
                return web.Response(body=await upstream.read(), status=upstream.status, content_type="application/json")
            response = web.StreamResponse(headers=_SSE_HEADERS)
            await response.prepare(request)
            chunks: AsyncIterator[bytes] = upstream.content.iter_any()
            try:
                while True:
                    chunk = await _or_closing(anext(chunks), closing)
                    if chunk is None:
                        continue
                    await response.write(chunk)
            except (_Closed, StopAsyncIteration, ConnectionError, aiohttp.ClientError):
                pass
        return response


def add_explorer(app: web.Application, relayer: Relayer, committee: Committee | None = None,
                 feed_server_url: str | None = None) -> Explorer:
    explorer = Explorer(relayer, committee, feed_server_url)
    explorer.add_to(app)
    return explorer


__all__ = ["Explorer", "add_explorer"]
