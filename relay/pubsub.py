"""A small in-process publish/subscribe: one publisher (the relayer's pipeline), any number of
readers (the HTTP API's event streams). Publishing never waits: each subscriber has a bounded queue,
and one that falls behind loses its oldest items (a stream re-reads the state it shows, so a lost
"this changed" costs nothing but a later refresh)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Broadcast(Generic[T]):
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._queues: set[asyncio.Queue[T]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def publish(self, item: T) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()  # the oldest goes: the subscriber is slow, not the publisher
            queue.put_nowait(item)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[T]]:
        """A queue receiving everything published while the `with` block runs."""
        queue: asyncio.Queue[T] = asyncio.Queue(self.queue_size)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
