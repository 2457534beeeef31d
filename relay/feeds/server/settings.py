"""The feed server's settings (`[feed_server]`, built by relay/daemons/feed_server.py) and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from relay.errors import TesseraError


class FeedServerError(TesseraError):
    """The feed server cannot start or was given settings it cannot use."""


@dataclass(frozen=True)
class FeedServerSettings:
    history_size: int = 1000  # reports kept per feed for /history and stream resumption
    stale_after_s: float = 3.0  # a feed with no report this long is stale (default: 3 × the round interval)
    stale_after: dict[str, float] = field(default_factory=dict)  # per-feed overrides
    queue_size: int = 256  # events a subscriber may have waiting before it is dropped
    max_subscribers: int = 10_000
    keepalive_s: float = 15.0  # SSE comment / WebSocket ping interval
    send_buffer_bytes: int | None = None  # SO_SNDBUF of stream sockets (None: the kernel's default)
    db: str | Path | None = None  # SQLite file or PostgreSQL URL: history survives a restart (None: memory only)
    drop_grace_s: float = 2.0  # a dropped subscriber's connection is aborted if it has not closed by then

    def __post_init__(self) -> None:
        if self.history_size < 1:
            raise FeedServerError("history_size must be at least 1")
        if self.queue_size < 1:
            raise FeedServerError("queue_size must be at least 1")
        if self.max_subscribers < 1:
            raise FeedServerError("max_subscribers must be at least 1")
        for name, value in [("stale_after_s", self.stale_after_s), *self.stale_after.items()]:
            if not value > 0:
                raise FeedServerError(f"stale_after {name}: {value} must be > 0 seconds")

    def stale_after_for(self, feed_id: str) -> float:
        return self.stale_after.get(feed_id, self.stale_after_s)
