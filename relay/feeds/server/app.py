"""The feed server's HTTP face (docs/FEEDS.md "Serving"): aiohttp routes over the fan-out hub.

    POST /v1/reports               a SignedReport (JSON); verified against the committee, newer rounds only
    GET  /v1/feeds                 every configured feed with its latest round and status
    GET  /v1/feeds/{id}/latest     the latest SignedReport + "stale" + "age_ms"
    GET  /v1/feeds/{id}/history    ?from_round=&limit=
    GET  /v1/stream?ids=a,b        SSE: report / stale / live / gap events, Last-Event-ID resumption
    GET  /v1/ws                    WebSocket: {"op": "subscribe"|"unsubscribe", "ids": [...], "since": {...}}
    GET  /openapi.json, /health, /ready, /metrics

The stream handlers only register a subscriber with the hub and then write whatever the hub queued
for it; the hub never awaits them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import generate_latest

from relay.aio import within
from relay.feeds.config import FeedConfig
from relay.feeds.server.consumer import StreamConsumer
from relay.feeds.server.events import parse_event_id
from relay.feeds.server.history import FeedState
from relay.feeds.server.hub import FeedHub, current_ms
from relay.feeds.server.settings import FeedServerSettings
from relay.feeds.server.subscribers import CLOSE, SseSubscriber, WsSubscriber
from relay.feeds.sse import encode_comment, encode_event
from relay.lifecycle import cancel_quietly
from relay.log import get_logger

log = get_logger("feeds.server")

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
MAX_REPORT_BODY = 16 * 1024
MAX_HISTORY_LIMIT = 1000
_RETRY = encode_event(retry=1000)  # first thing on a stream: reconnect after 1 s
_KEEPALIVE = encode_comment("keepalive")


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class FeedServer:
    """The hub (`self.hub`: ingest, history, fan-out, staleness) served over HTTP (`self.app`)."""

    def __init__(self, committee, feeds: dict[str, FeedConfig], settings: FeedServerSettings | None = None,
                 previous_committee=None) -> None:
        self.hub = FeedHub(committee, feeds, settings, previous_committee)
        self.stream: StreamConsumer | None = None  # set when fed by NATS JetStream (its status in /health)
        self._app: web.Application | None = None

    @property
    def settings(self) -> FeedServerSettings:
        return self.hub.settings

    @property
    def feeds(self) -> dict[str, FeedState]:
        return self.hub.feeds

    @property
    def committee(self):
        return self.hub.committee

    @property
    def app(self) -> web.Application:
        if self._app is None:
            self._app = self._build_app()
        return self._app

    def _feed_or_404(self, request: web.Request) -> FeedState:
        fid = request.match_info["id"]
        state = self.feeds.get(fid)
        if state is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"unknown feed {fid!r}; GET /v1/feeds lists the feeds"}),
                                   content_type="application/json")
        return state

    def _ids_from_query(self, request: web.Request) -> list[str]:
        ids: list[str] = []
        for value in request.query.getall("ids", []):
            ids.extend(part for part in value.split(",") if part)
        ids.extend(request.query.getall("id", []))  # one id per parameter, for ids holding a comma
        ids = list(dict.fromkeys(ids)) or list(self.feeds)
        unknown = [i for i in ids if i not in self.feeds]
        if unknown:
            raise web.HTTPBadRequest(text=json.dumps({"error": f"unknown feeds {unknown}; GET /v1/feeds lists the feeds"}),
                                     content_type="application/json")
        return ids

    def _parse_since(self, raw: object, where: str = "since") -> dict[str, int]:
        """`since` as a JSON object {"ETH/USD": 42} or as `ETH/USD:42,BTC/USD:17`."""
        if raw is None or raw == "":
            return {}
        if isinstance(raw, str) and raw.lstrip().startswith("{"):
            try:
                raw = json.loads(raw)
            except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
                raise ValueError(f"{where} is not valid JSON; send an object like {{\"ETH/USD\": 42}}") from None
        result: dict[str, int] = {}
        if isinstance(raw, dict):
            items = list(raw.items())
        elif isinstance(raw, str):
            items = []
            for part in raw.split(","):
                parsed = parse_event_id(part)
                if parsed is None:
                    raise ValueError(f"{where}: {part!r} is not <feed>:<round>")
                items.append(parsed)
        else:
            raise ValueError(f"{where} must be an object mapping feed ids to the last round seen")
        for fid, round_ in items:
            if fid not in self.feeds:
                raise ValueError(f"{where}: unknown feed {fid!r}; GET /v1/feeds lists the feeds")
            if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0:
                raise ValueError(f"{where}.{fid}: {round_!r} must be a round number (integer >= 0)")
            result[fid] = round_
        return result

    def _build_app(self) -> web.Application:
        routes = web.RouteTableDef()
        server = self

        @routes.post("/v1/reports")
        async def post_report(request: web.Request) -> web.Response:
            try:
                data = await request.json()
            # LookupError: a charset Python does not know; RecursionError: JSON nested too deep.
            except (json.JSONDecodeError, UnicodeDecodeError, LookupError, RecursionError):
                server.hub.metrics.reports.labels("rejected").inc()
                return web.json_response({"accepted": False, "reason": "the body is not JSON: POST a SignedReport object"},
                                         status=400)
            result = server.hub.ingest_json(data)
            return web.json_response(result.to_json(), status=result.status)

        @routes.get("/v1/feeds")
        async def list_feeds(request: web.Request) -> web.Response:
            now = current_ms()
            feeds = []
            for fid, state in server.feeds.items():
                latest = state.latest
                feeds.append({
                    "id": fid,
                    "description": state.config.description,
                    "decimals": state.config.decimals,
                    "latest_round": latest.report.round if latest else None,
                    "status": state.status(now),
                    "age_ms": state.age_ms(now),
                    "stale_after_ms": state.stale_after_ms,
                })
            return web.json_response({"feeds": feeds, "epoch": server.committee.epoch})

        @routes.get(r"/v1/feeds/{id:.+}/latest")
        async def latest(request: web.Request) -> web.Response:
            state = server._feed_or_404(request)
            entry = state.latest
            if entry is None:
                return _json_error(404, f"feed {state.config.id!r} has no report yet; retry after the next round")
            now = current_ms()
            return web.json_response({**entry.event.data, "stale": state.is_stale(now), "age_ms": state.age_ms(now)})

        @routes.get(r"/v1/feeds/{id:.+}/history")
        async def history(request: web.Request) -> web.Response:
            state = server._feed_or_404(request)
            try:
                from_round = int(request.query.get("from_round", "0"))
                limit = int(request.query.get("limit", "100"))
            except ValueError:
                return _json_error(400, "from_round and limit must be integers")
            if from_round < 0 or not 1 <= limit <= MAX_HISTORY_LIMIT:
                return _json_error(400, f"from_round must be >= 0 and limit in 1..{MAX_HISTORY_LIMIT}")
            entries = [e for e in state.history if e.report.round >= from_round][:limit]
            held_from = state.history[0].report.round if state.history else None
            return web.json_response({
                "feed_id": state.config.id,
                "reports": [e.event.data for e in entries],
                "oldest_round": held_from,
                "complete_after": state.floor,  # rounds <= this may be missing here
                "next_from_round": entries[-1].report.round + 1 if len(entries) == limit else None,
            })

        @routes.get("/v1/stream")
        async def stream(request: web.Request) -> web.StreamResponse:
            ids = server._ids_from_query(request)
            try:
                since = server._parse_since(request.query.get("since"))
            except ValueError as exc:
                return _json_error(400, str(exc))
            after_seq = None
            last_event = request.headers.get("Last-Event-ID")
            if last_event:
                parsed = parse_event_id(last_event)
                if parsed is None or parsed[0] not in server.feeds:
                    return _json_error(400, f"Last-Event-ID {last_event!r} is not <feed>:<round> of a served feed")
                fid, round_ = parsed
                since.setdefault(fid, round_)
                after_seq = server.hub.seq_of(fid, round_)
                # When that report is no longer held, the other feeds start from their latest report.
            if server.hub.subscriber_count >= server.settings.max_subscribers:
                return _json_error(503, f"this server already has {server.settings.max_subscribers} subscribers; "
                                        "retry later or use another feed server")
            transport = request.transport
            if transport is None or transport.is_closing():
                return web.Response(status=499)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                   "X-Accel-Buffering": "no"})
            chunked = request.version >= (1, 1)
            if chunked:
                response.enable_chunked_encoding()
            await response.prepare(request)
            server._tune_socket(transport)
            await response.write(_RETRY)
            sub = SseSubscriber((), server.settings.queue_size, transport, chunked)
            server.hub.register(sub)
            server.hub.subscribe(sub, ids, since, after_seq)
            keepalive = server.settings.keepalive_s
            try:
                while not sub.closed:
                    try:
                        await within(sub.wakeup.wait(), keepalive)
                    except TimeoutError:
                        if transport.is_closing():
                            break
                        sub.writing = True
                        await response.write(_KEEPALIVE)
                        sub.writing = False
                        continue
                    sub.wakeup.clear()
                    while sub.queue and not sub.closed:
                        item = sub.queue.popleft()
                        sub.writing = True
                        await response.write(item.sse)
                        sub.writing = False
            except (ConnectionError, RuntimeError):  # the subscriber went away mid-write
                pass
            finally:
                sub.closed = True
                server.hub.unregister(sub)
            return response

        @routes.get("/v1/ws")
        async def websocket(request: web.Request) -> web.StreamResponse:
            if server.hub.subscriber_count >= server.settings.max_subscribers:
                return _json_error(503, f"this server already has {server.settings.max_subscribers} subscribers; "
                                        "retry later or use another feed server")
            ws = web.WebSocketResponse(heartbeat=server.settings.keepalive_s, max_msg_size=64 * 1024)
            await ws.prepare(request)
            transport = request.transport
            if transport is not None:
                server._tune_socket(transport)
            sub = WsSubscriber(server.settings.queue_size, ws, transport)
            server.hub.register(sub)
            writer = asyncio.create_task(server._ws_writer(sub))
            try:
                async for msg in ws:
                    if msg.type != WSMsgType.TEXT:
                        if msg.type == WSMsgType.BINARY:
                            server._ws_error(sub, "send JSON text messages, not binary")
                        continue
                    server._ws_command(sub, msg.data)
            finally:
                sub.closed = True
                server.hub.unregister(sub)
                sub.wakeup.set()
                await cancel_quietly(writer)
            return ws

        @routes.get("/openapi.json")
        async def openapi(request: web.Request) -> web.Response:
            return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")

        @routes.get("/health")
        async def health(request: web.Request) -> web.Response:
            now = current_ms()
            statuses = {fid: s.status(now) for fid, s in server.feeds.items()}
            return web.json_response({
                "ok": True,
                "epoch": server.committee.epoch,
                "feeds": statuses,
                "stale": sorted(fid for fid, st in statuses.items() if st != "live"),
                "subscribers": server.hub.subscriber_count,
                "dropped_subscribers": server.hub.dropped_count,
                "nats": server.stream.status() if server.stream is not None else None,
            })

        @routes.get("/ready")
        async def ready(request: web.Request) -> web.Response:
            # For a load balancer's readiness check: a server fed by JetStream takes subscribers once it
            # has replayed what the stream retained. Not ready is not unhealthy: while NATS is away a
            # caught-up server stays ready and serves what it holds (its feeds turn stale).
            stream = server.stream
            if stream is not None and not stream.caught_up.is_set():
                return web.json_response({"ready": False, "reason": "replaying the NATS stream",
                                          "pending": stream.pending}, status=503)
            return web.json_response({"ready": True})

        @routes.get("/metrics")
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(server.hub.metrics.registry), content_type="text/plain", charset="utf-8")

        app = web.Application(client_max_size=MAX_REPORT_BODY)
        app.add_routes(routes)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    def _tune_socket(self, transport: asyncio.BaseTransport) -> None:
        size = self.settings.send_buffer_bytes
        sock = transport.get_extra_info("socket")
        if size is not None and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            except OSError as exc:
                log.warning("send_buffer_not_set", error=str(exc))

    # --- WebSocket ---------------------------------------------------------------------------

    def _ws_error(self, sub: WsSubscriber, message: str) -> None:
        self._offer_control(sub, json.dumps({"type": "error", "message": message}))

    def _offer_control(self, sub: WsSubscriber, text: str) -> None:
        # Replies to a subscriber's own requests go ahead of the bound: they are few and it asked for them.
        sub.queue.append(text)
        sub.wakeup.set()

    def _ws_command(self, sub: WsSubscriber, text: str) -> None:
        try:
            message = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return self._ws_error(sub, 'not JSON; send {"op": "subscribe", "ids": ["ETH/USD"]}')
        if not isinstance(message, dict) or message.get("op") not in ("subscribe", "unsubscribe"):
            return self._ws_error(sub, 'unknown op; use {"op": "subscribe"|"unsubscribe", "ids": [...]}')
        ids = message.get("ids")
        if ids is None and message["op"] == "subscribe":
            ids = list(self.feeds)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return self._ws_error(sub, "ids must be a list of feed id strings")
        unknown = [i for i in ids if i not in self.feeds]
        if unknown:
            return self._ws_error(sub, f"unknown feeds {unknown}; GET /v1/feeds lists the feeds")
        if message["op"] == "unsubscribe":
            self.hub.unsubscribe(sub, ids)
            return self._offer_control(sub, json.dumps({"type": "unsubscribed", "ids": ids}))
        try:
            since = self._parse_since(message.get("since"))
        except ValueError as exc:
            return self._ws_error(sub, str(exc))
        self._offer_control(sub, json.dumps({"type": "subscribed", "ids": ids}))
        self.hub.subscribe(sub, [i for i in ids if i not in sub.ids or i in since], since)

    async def _ws_writer(self, sub: WsSubscriber) -> None:
        ws = sub.ws
        try:
            while not sub.closed:
                await sub.wakeup.wait()
                sub.wakeup.clear()
                while sub.queue and not sub.closed:
                    item = sub.queue.popleft()
                    if item is CLOSE:
                        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow consumer")
                        return
                    await ws.send_str(item if isinstance(item, str) else item.ws)
        except (ConnectionError, RuntimeError):
            pass

    # --- lifecycle -------------------------------------------------------------------------

    async def _on_startup(self, app: web.Application) -> None:
        self.hub.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        for sub in self.hub.detach_all():
            sub.close()
            if isinstance(sub, WsSubscriber) and not sub.ws.closed:
                try:
                    await asyncio.wait_for(sub.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"), 1.0)
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
            elif isinstance(sub, SseSubscriber):
                sub.transport.close()

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.hub.close()
