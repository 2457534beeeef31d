"""`relay feed-server`: the feed server daemon."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from relay.errors import ConfigError
from relay.lifecycle import settle_heap
from relay.log import get_logger

log = get_logger("feeds.serve")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this module's sub-commands (each sets `handler`)."""
    p = sub.add_parser(
        "feed-server", help="serve committee-signed feed reports over REST, SSE and WebSocket",
        description="Accept feed reports from the round leader (POST /v1/reports, verified against the committee "
        "key) and serve them: GET /v1/feeds, /v1/feeds/{id}/latest, /v1/feeds/{id}/history, SSE /v1/stream, "
        "WebSocket /v1/ws, /openapi.json, /health, /metrics. Settings come from [feed_server]; feeds from "
        "[feeds.<id>]; the committee from [committee] file.",
    )
    p.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")
    p.add_argument("--listen", default=None, help="host:port to listen on (default: [feed_server] listen)")
    p.set_defaults(handler=_run)


def settings_from_config(config, base: Path | None = None):
    """FeedServerSettings from `[feed_server]` (stale default: 3 × [feed_round] interval_ms)."""
    from relay.feeds.server import FeedServerSettings

    section = config.feed_server
    stale = section.stale_after_s
    if stale is None:
        stale = 3 * config.feed_round.interval_ms / 1000
    db = section.db
    if db is not None and not db.is_absolute() and base is not None:
        db = base / db
    return FeedServerSettings(
        history_size=section.history_size, stale_after_s=stale, stale_after=dict(section.stale_after),
        queue_size=section.queue_size, max_subscribers=section.max_subscribers, keepalive_s=section.keepalive_s,
        send_buffer_bytes=section.send_buffer_bytes, db=db,
    )


def build_server(config, base: Path | None = None):
    from attest.committee import Committee
    from relay.feeds.server import FeedServer

    if config.committee is None:
        raise ConfigError("the config has no [committee] table: add `file = \"committee.toml\"` so reports can be verified")
    if not config.feeds:
        raise ConfigError("the config has no [feeds.\"<id>\"] tables: the feed server needs at least one feed to serve")
    committee = Committee.load(config.committee.file)
    previous = config.feed_server.previous_committee
    if previous is not None:
        previous = Committee.load(base / previous if base is not None and not previous.is_absolute() else previous)
    return FeedServer(committee, dict(config.feeds), settings_from_config(config, base), previous_committee=previous)


async def run_feed_server(config, listen: str | None = None, base: Path | None = None,
                          stop: asyncio.Event | None = None) -> None:
    server = build_server(config, base)
    listen = listen or config.feed_server.listen
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    runner = await serve_app(server.app, listen)
    settle_heap()
    try:
        log.info("feed server running", listen=listen, feeds=list(server.feeds), epoch=server.committee.epoch,
                 history_size=server.settings.history_size, stale_after_s=server.settings.stale_after_s,
                 db=str(server.settings.db) if server.settings.db else None)
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("feed server stopped")


async def serve_app(app, listen: str):
    """Like relay.daemons._serve, with handler cancellation: a stream handler learns at once that its
    subscriber hung up (instead of at the next keepalive) and unregisters it."""
    from aiohttp import web

    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, int(port), backlog=1024).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}; is another instance running?") from None
    return runner


def _run(args: argparse.Namespace) -> int:
    from relay.cli import _config_path
    from relay.config import _check_listen, load_config

    path = _config_path(args.config)
    config = load_config(path)
    if args.listen is not None:
        try:
            _check_listen(args.listen)
        except ValueError as exc:
            raise ConfigError(f"--listen: {exc}") from None
    asyncio.run(run_feed_server(config, args.listen, base=Path(path).parent))
    return 0
