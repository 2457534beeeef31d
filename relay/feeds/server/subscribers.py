"""Stream subscribers: what the fan-out hub hands events to, one class per transport.

A subscriber takes a live event without the hub ever awaiting it: an SSE event goes straight into
the subscriber's transport while that transport's buffer is small; otherwise it waits in the
subscriber's bounded queue, and `offer` answers False when that queue is full (the hub then drops
the subscriber: SSE closed, WS close 1008 "slow consumer").
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Iterable

from aiohttp import web

from relay.feeds.server.events import Event, dropped_event

# Above this many bytes waiting in a subscriber's transport, events queue instead (and the queue bound applies).
TRANSPORT_HIGH_WATER = 64 * 1024

CLOSE = object()  # queued for a WebSocket writer: send close 1008 and stop


class Subscriber:
    transport_name = "?"

    def __init__(self, ids: Iterable[str], queue_size: int) -> None:
        self.ids: set[str] = set(ids)
        self.queue: deque[Any] = deque()
        self.queue_size = queue_size
        self.wakeup = asyncio.Event()
        self.dropped = False
        self.closed = False
        self.since: dict[str, int] = {}

    def enqueue_backlog(self, events: Iterable[Event]) -> None:
        # Catch-up may exceed queue_size (it is bounded by history_size); only live events are bounded.
        self.queue.extend(events)
        if self.queue:
            self.wakeup.set()

    def offer(self, event: Event) -> bool:
        """Hand over one live event without waiting; False when the subscriber is too slow."""
        if len(self.queue) >= self.queue_size:
            return False
        self.queue.append(event)
        self.wakeup.set()
        return True

    def drop(self, reason: str, grace_s: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


class SseSubscriber(Subscriber):
    transport_name = "sse"

    def __init__(self, ids: Iterable[str], queue_size: int, transport: asyncio.Transport, chunked: bool) -> None:
        super().__init__(ids, queue_size)
        self.transport = transport
        self.chunked = chunked
        self.writing = False  # the handler is inside a write (its events are in flight)

    def offer(self, event: Event) -> bool:
        transport = self.transport
        if transport.is_closing():
            self.close()
            return True
        if not self.queue and not self.writing and transport.get_write_buffer_size() <= TRANSPORT_HIGH_WATER:
            # The common case: straight into the socket, no task wake-up per subscriber.
            transport.write(self.sse_bytes(event))
            return True
        return super().offer(event)

    def sse_bytes(self, event: Event) -> bytes:
        return event.sse_chunk if self.chunked else event.sse

    def drop(self, reason: str, grace_s: float) -> None:
        self.dropped = True
        self.queue.clear()
        self.close()
        transport = self.transport
        if not transport.is_closing():
            transport.write(self.sse_bytes(dropped_event(reason)))
            transport.close()  # flushes what it can, then closes
            asyncio.get_running_loop().call_later(grace_s, transport.abort)


class WsSubscriber(Subscriber):
    transport_name = "ws"

    def __init__(self, queue_size: int, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        super().__init__((), queue_size)
        self.ws = ws
        self.transport = transport

    def drop(self, reason: str, grace_s: float) -> None:
        self.dropped = True
        self.queue.clear()
        self.queue.append(CLOSE)  # the writer sends close 1008 once it gets past its current send
        self.wakeup.set()
        transport = self.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(grace_s, lambda: None if transport.is_closing() else transport.abort())
