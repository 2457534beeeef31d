"""The aiohttp server: JSON-RPC over HTTP on one port, PubSub over WebSocket on another, a slot clock."""

from __future__ import annotations

import asyncio
import errno
import json
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from solders.keypair import Keypair

from adapters.solana_localnet.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    PortInUseError,
    RpcError,
)
from adapters.solana_localnet.ledger import Ledger, LedgerConfig
from adapters.solana_localnet.pubsub import PubSub
from adapters.solana_localnet.rpc import RpcMethods

# Lazy: the CLI configures logging after these modules are imported (relay.log.get_logger binds at once).
log = structlog.get_logger("solana_localnet.server")

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 100


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    rpc_port: int = 8899
    ws_port: int = 8900
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch: int = DEFAULT_MAX_BATCH


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _error_obj(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_obj(), "id": request_id}


class LocalnetServer:
    """Lifecycle: `await start()`, serve until `await stop()`; or `async with LocalnetServer(...)`."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.ledger = Ledger(self.config.ledger)
        self.identity = Keypair()
        self.methods = RpcMethods(self.ledger, self.identity.pubkey())
        self.pubsub = PubSub(self.ledger)
        self._runners: list[web.AppRunner] = []
        self._ticker: asyncio.Task[None] | None = None
        self.rpc_port = 0
        self.ws_port = 0

    @property
    def faucet(self) -> Keypair:
        return self.ledger.faucet

    @property
    def rpc_url(self) -> str:
        return f"http://{self.config.host}:{self.rpc_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.ws_port}"

    async def __aenter__(self) -> "LocalnetServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        cfg = self.config
        rpc_app = web.Application(client_max_size=cfg.max_body_bytes)
        rpc_app.router.add_post("/", self._handle_http)
        rpc_app.router.add_get("/health", self._handle_health)
        rpc_app.router.add_post("/{tail:.*}", self._handle_http)  # validators ignore the path too
        ws_app = web.Application()
        ws_app.router.add_get("/", self.pubsub.handle)
        ws_app.router.add_get("/{tail:.*}", self.pubsub.handle)
        try:
            self.rpc_port = await self._listen(rpc_app, cfg.rpc_port, "--rpc-port")
            self.ws_port = await self._listen(ws_app, cfg.ws_port, "--ws-port")
        except BaseException:
            await self._cleanup_runners()
            raise
        self._ticker = asyncio.create_task(self._tick(), name="solana-localnet-slots")
        log.info(
            "solana localnet listening",
            rpc=self.rpc_url,
            ws=self.ws_url,
            slot_ms=cfg.ledger.slot_ms,
            finality_slots=cfg.ledger.finality_slots,
            faucet=str(self.faucet.pubkey()),
        )

    async def _listen(self, app: web.Application, port: int, flag: str) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        # SO_REUSEADDR: a restarted server binds its port while connections it closed itself sit in
        # TIME-WAIT (Linux refuses that unless the old socket had it too). It never lets two servers
        # listen on one port: a port somebody listens on still fails with EADDRINUSE.
        site = web.TCPSite(runner, self.config.host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUseError(self.config.host, port, flag) from exc
            raise
        return runner.addresses[0][1]

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        await self.pubsub.close_all()
        await self._cleanup_runners()
        log.info("solana localnet stopped")

    async def _cleanup_runners(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.ledger.slot_ms / 1000
        deadline = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            try:
                self.ledger.advance_slot()
            except Exception:
                log.exception("slot advance failed")
            deadline += interval
            if loop.time() - deadline > 10 * interval:
                deadline = loop.time() + interval  # the loop stalled: resume the pace, do not burst slots

    # ----- HTTP -----

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _handle_http(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            error = RpcError(INVALID_REQUEST, f"request body too large: the limit is {self.config.max_body_bytes} bytes")
            return web.Response(status=413, text=_dumps(_error_obj(None, error)), content_type="application/json")
        try:
            request_obj = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's json parses
            return self._json(_error_obj(None, RpcError(PARSE_ERROR, "Parse error")))
        if isinstance(request_obj, list):
            if not request_obj:
                return self._json(_error_obj(None, RpcError(INVALID_REQUEST, "Invalid request")))
            if len(request_obj) > self.config.max_batch:
                error = RpcError(INVALID_REQUEST, f"batch too large: at most {self.config.max_batch} requests per batch")
                return self._json(_error_obj(None, error))
            responses = [r for r in [await self._call(item) for item in request_obj] if r is not None]
            return self._json(responses)
        response = await self._call(request_obj)
        if response is None:
            return web.Response(status=204)
        return self._json(response)

    @staticmethod
    def _json(obj: Any) -> web.Response:
        return web.Response(text=_dumps(obj), content_type="application/json")

    async def _call(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error_obj(None, RpcError(INVALID_REQUEST, "Invalid request"))
        request_id = request.get("id")
        if (
            request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
            or not (request_id is None or isinstance(request_id, (str, int)))
            or isinstance(request_id, bool)
        ):
            return _error_obj(request_id if isinstance(request_id, (str, int)) else None,
                              RpcError(INVALID_REQUEST, "Invalid request"))
        try:
            result = await self.methods.call(request["method"], request.get("params"))
        except RpcError as exc:
            response = _error_obj(request_id, exc)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise
        except BaseException:  # includes pyo3's PanicException: one bad request must not stop the server
            log.exception("rpc method failed", method=request["method"])
            response = _error_obj(request_id, RpcError(INTERNAL_ERROR, "Internal error"))
        else:
            response = {"jsonrpc": "2.0", "result": result, "id": request_id}
        if "id" not in request:
            return None  # a JSON-RPC notification gets no response
        return response
