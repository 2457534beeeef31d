"""The feed server daemon (`relay feed-server`, parsed in relay/cli/feeds.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from attest.committee import Committee
from relay.config import is_database_url
from relay.errors import ConfigError
from relay.feeds.jetstream import StreamSettings
from relay.feeds.server import FeedServer, FeedServerSettings
from relay.feeds.server.consumer import StreamConsumer
from relay.lifecycle import Service, http_service, run_daemon


def settings_from_config(config, base: Path | None = None):
    """FeedServerSettings from `[feed_server]` (stale default: 3 × [feed_round] interval_ms)."""
    section = config.feed_server
    stale = section.stale_after_s
    if stale is None:
        stale = 3 * config.feed_round.interval_ms / 1000
    db: str | Path | None = section.db
    if db is not None and not is_database_url(db):  # a PostgreSQL URL is used as written
        db = Path(db)
        if not db.is_absolute() and base is not None:
            db = base / db
    return FeedServerSettings(
        history_size=section.history_size, stale_after_s=stale, stale_after=dict(section.stale_after),
        queue_size=section.queue_size, max_subscribers=section.max_subscribers, keepalive_s=section.keepalive_s,
        send_buffer_bytes=section.send_buffer_bytes, db=db,
    )


def build_server(config, base: Path | None = None):
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
    services = []
    stream = StreamSettings.from_section(config.feed_server)
    if stream is not None:
        # Set up before the HTTP side: the catch-up from the stream starts before the first subscriber.
        server.stream = StreamConsumer(server.hub, stream, name=f"tessera-feed-server {listen}")
        services.append(Service("nats", setup=server.stream.start, cleanup=server.stream.close))
    # Handler cancellation: a stream handler learns at once that its subscriber hung up (instead of
    # at the next keepalive) and unregisters it.
    services.append(http_service("http", server.app, listen, handler_cancellation=True, shutdown_timeout=5,
                                 backlog=1024))
    await run_daemon("feed server", services, stop, listen=listen, feeds=list(server.feeds),
                     epoch=server.committee.epoch, history_size=server.settings.history_size,
                     stale_after_s=server.settings.stale_after_s,
                     db=server.hub.db.location if server.hub.db else None,
                     nats=stream.shown_urls if stream else None, nats_stream=stream.stream if stream else None)
