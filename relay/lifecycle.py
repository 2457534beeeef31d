"""The lifecycle shared by long-running parts: start background tasks, wait for the stop event,
cancel and collect them."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Coroutine


async def run_until_stopped(stop: asyncio.Event, *coroutines: Coroutine) -> None:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def keep_running(what: str, run: Callable[[], Awaitable[None]], log, base_delay: float = 1.0,
                       max_delay: float = 30.0) -> None:
    """Run `run()` again after any failure (an RPC outage that outlasted the adapter's own retries,
    say), with exponential backoff, so one chain's trouble never silently stops a watcher."""
    delay = base_delay
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("task failed; restarting", task=what, error=f"{type(exc).__name__}: {exc}", in_s=delay)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
