"""The relayer's HTTP API: /health, /metrics (Prometheus), message status and forced retry, and the
explorer (relay/explorer: the page at /explorer/, search, tasks, live message events)."""

from __future__ import annotations

import hmac
import ipaddress
import time

from aiohttp import web

from attest.committee import Committee
from relay.explorer import add_explorer
from relay.pipeline import Relayer
from relay.store import MessageRecord


def record_json(record: MessageRecord) -> dict:
    now = time.time()
    return {
        "message_id": "0x" + record.message_id.hex(),
        "src_domain": record.src_domain,
        "nonce": record.nonce,
        "dst_domain": record.dst_domain,
        "kind": record.kind,
        "stage": record.stage.value,
        "reason": record.reason,
        "reason_code": record.reason_code.value if record.reason_code else None,
        "attempts": record.attempts,
        "next_attempt_in_s": None if record.next_attempt_at == float("inf") else round(max(0.0, record.next_attempt_at - now), 3),
        "source_tx": record.source_tx,
        "dest_tx": record.dest_tx,
        "epoch": record.epoch,
        "observed_at": record.observed_at,
        "confirmed_at": record.confirmed_at,
        "age_s": round(now - record.observed_at, 3),
    }


def _message_id(request: web.Request) -> bytes:
    raw = request.match_info["message_id"].removeprefix("0x")
    try:
        message_id = bytes.fromhex(raw)
    except ValueError:
        message_id = b""
    if len(message_id) != 32:
        raise web.HTTPBadRequest(
            text='{"error": "message id must be 32 bytes of hex (0x-prefixed or not)"}', content_type="application/json"
        )
    return message_id


def _authorize_operator(request: web.Request, admin_token: str | None) -> None:
    """Operator routes change what the relayer does, so they are not open to whoever reaches the API:
    with `[relayer] admin_token` set, a request must carry `Authorization: Bearer <token>`; without
    one, only callers on this machine (loopback) are served — the default `listen` is 127.0.0.1."""
    if admin_token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {admin_token}".encode()):
            raise web.HTTPUnauthorized(
                text='{"error": "operator route: send Authorization: Bearer <[relayer] admin_token>"}',
                content_type="application/json", headers={"WWW-Authenticate": "Bearer"})
        return
    peer = request.remote or ""
    try:
        loopback = ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise web.HTTPForbidden(
            text='{"error": "operator routes answer only on this machine; set [relayer] admin_token to allow '
                 'remote callers with Authorization: Bearer <token>"}', content_type="application/json")


def build_app(relayer: Relayer, committee: Committee | None = None,
              feed_server_url: str | None = None, admin_token: str | None = None) -> web.Application:
    """`committee` lets the explorer ask members who signed; `feed_server_url` feeds its price charts.
    `admin_token` guards the operator routes (forced retry): see `_authorize_operator`."""
    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        chains = {
            a.name: [{"url": e.url, "healthy": e.healthy, "errors": e.total_errors, "last_error": e.last_error}
                     for e in a.health()]
            for a in relayer.adapters.values()
        }
        ok = all(any(e["healthy"] for e in endpoints) for endpoints in chains.values())
        return web.json_response({"ok": ok, "chains": chains}, status=200 if ok else 503)

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        await relayer.metrics_refresh()
        return web.Response(body=relayer.metrics.render(), content_type="text/plain", charset="utf-8")

    @routes.get("/v1/messages")
    async def messages(request: web.Request) -> web.Response:
        try:
            limit = min(1000, max(1, int(request.query.get("limit", "50"))))
        except ValueError:
            raise web.HTTPBadRequest(text='{"error": "limit must be an integer"}', content_type="application/json")
        return web.json_response([record_json(r) for r in await relayer.store.listing(limit)])

    @routes.get("/v1/messages/{message_id}")
    async def message(request: web.Request) -> web.Response:
        record = await relayer.store.get(_message_id(request))
        if record is None:
            return web.json_response({"error": "unknown message id"}, status=404)
        # The whole envelope, so clients can check it against the id they know (SDK task results).
        return web.json_response({**record_json(record), "envelope": "0x" + record.envelope.hex()})

    @routes.post("/v1/messages/{message_id}/retry")
    async def retry(request: web.Request) -> web.Response:
        _authorize_operator(request, admin_token)
        record = await relayer.store.force_retry(_message_id(request))
        if record is None:
            return web.json_response({"error": "unknown message id"}, status=404)
        relayer.wake()
        return web.json_response(record_json(record))

    app = web.Application(client_max_size=64 * 1024)
    app.add_routes(routes)
    add_explorer(app, relayer, committee, feed_server_url)
    return app
