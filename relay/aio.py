"""asyncio waits that never swallow a cancellation.

On Python 3.11, `asyncio.wait_for(inner, timeout)` returns the inner result when the task is
cancelled in the same loop iteration as the inner awaitable completes (CPython gh-86296, fixed in
3.12 by reimplementing wait_for on `asyncio.timeout`). A loop such as
`while True: await asyncio.wait_for(wake.wait(), poll)` then keeps running after its task was
cancelled, and whoever awaits the cancelled task (a daemon shutting down, an outer `wait_for`) waits
forever. Long-running loops wait through these instead: they are built on `asyncio.timeout`, which
re-raises an outer cancellation even when its own deadline passes at the same moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set, at most `timeout` seconds (<= 0: just look). True when it is set."""
    if event.is_set():
        return True
    if timeout <= 0:
        return False
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def within(awaitable: Awaitable[T], timeout: float) -> T:
    """`await awaitable`, raising TimeoutError after `timeout` seconds; an outer cancellation always
    propagates (see the module docstring)."""
    async with asyncio.timeout(timeout):
        return await awaitable
