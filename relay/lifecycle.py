"""The lifecycle shared by long-running parts: start background tasks, wait for the stop event,
cancel and collect them."""

from __future__ import annotations

import asyncio
import gc
from typing import Awaitable, Callable, Coroutine

_own_process = False


def own_process() -> None:
    """Called by the CLI before it starts a daemon: this process runs that daemon and nothing else,
    so the daemon may tune process-wide settings (settle_heap)."""
    global _own_process
    _own_process = True


def settle_heap() -> bool:
    """Once a daemon has started (modules imported, adapters, keys and servers built): collect, then
    move everything left into the GC's permanent generation (gc.freeze).

    Without it, each full collection walks every object from start-up again — web3, solana, the
    ABIs, ~60,000+ objects, 30–50 ms on this machine — and daemons with the same workload (the
    attesters of one committee) tend to collect at the same moment, stalling a feed round in every
    member at once. Objects made later are collected as usual. Does nothing in a process that is not
    the daemon's own (a test or a library user running a daemon in-process). True when it froze."""
    if not _own_process:
        return False
    gc.collect()
    gc.freeze()
    return True


async def run_until_stopped(stop: asyncio.Event, *coroutines: Coroutine) -> None:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def cancel_quietly(task: asyncio.Task | None) -> None:
    """Cancel a helper task and wait until it has ended, whatever it ended with: for background
    helpers (a wake-up subscription, a reader pump, a writer) whose own errors are already logged or
    do not matter once their owner is done."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


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
