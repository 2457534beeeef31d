"""One lifecycle for every daemon (relayer, attester, worker, feed server, feed pusher):

    set every service up, in order  ->  run them together  ->  clean up, in reverse order

`run_daemon` is that lifecycle. The first service to fail stops the others; a service whose run
returns ends the daemon (the others are told to stop); SIGINT/SIGTERM stop it; cleanup always runs,
also for the services set up before one whose setup failed. Once everything is set up the daemon's
start-up heap is frozen out of the GC's reach (`settle_heap`).

Also the small helpers the long-running parts share: `run_until_stopped`, `keep_running`,
`cancel_quietly`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import signal
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Iterable

from aiohttp import web

from relay.errors import ConfigError
from relay.log import get_logger

log = get_logger("daemon")

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


# --- the daemon lifecycle ---------------------------------------------------------------------------

Run = Callable[[asyncio.Event], Awaitable[None]]
Hook = Callable[[], Awaitable[Any] | Any]


@dataclass(frozen=True, slots=True)
class Service:
    """One long-running part of a daemon.

    `setup` runs before any service runs (a failure there stops the start-up); `run(stop)` runs
    alongside the other services and must return soon after `stop` is set (returning earlier ends
    the daemon); `cleanup` runs once the daemon ends, if `setup` succeeded (or there was none).
    Each of the three may be left out; `setup` and `cleanup` may be plain functions."""

    name: str
    run: Run | None = None
    setup: Hook | None = None
    cleanup: Hook | None = None


async def _call(hook: Hook) -> Any:
    result = hook()
    if inspect.isawaitable(result):
        result = await result
    return result


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event):
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _run_service(service: Service, stop: asyncio.Event) -> None:
    assert service.run is not None
    try:
        await service.run(stop)
    finally:
        stop.set()  # one service ending (done, failed or cancelled) ends the daemon


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error that stopped the daemon, as itself (so `relay` can print a TesseraError's message)."""
    errors = [e for e in group.exceptions if not isinstance(e, asyncio.CancelledError)] or list(group.exceptions)
    first = errors[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


async def run_daemon(name: str, services: Iterable[Service], stop: asyncio.Event | None = None,
                     **announce: Any) -> None:
    """Set up every service in order, run them together until `stop` is set (by the caller, by
    SIGINT/SIGTERM when no `stop` is given, or by a service that ends), then clean up in reverse
    order. The first service to fail stops the others and its error is raised once cleanup is done.
    `announce` is logged with "<name> running" once everything is set up."""
    services = list(services)
    async with contextlib.AsyncExitStack() as stack:
        if stop is None:
            stop = asyncio.Event()
            stack.enter_context(_stop_on_signals(stop))
        stack.callback(lambda: log.info(f"{name} stopped"))  # the last thing said, after every cleanup
        for service in services:
            if service.setup is not None:
                await _call(service.setup)
            if service.cleanup is not None:
                stack.push_async_callback(_call, service.cleanup)
        settle_heap()
        log.info(f"{name} running", **announce)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(stop.wait())  # a daemon of servers alone (no run) lives until stopped
                for service in services:
                    if service.run is not None:
                        group.create_task(_run_service(service, stop), name=f"{name}:{service.name}")
        except BaseExceptionGroup as failed:
            error = _first_error(failed)
            log.error(f"{name} failed", error=f"{type(error).__name__}: {error}")
            raise error from None


def http_service(name: str, app: web.Application, listen: str, **runner_options: Any) -> Service:
    """An aiohttp application served on `listen` ("host:port") as one service of a daemon: listening
    is part of its setup, so a taken port fails the start-up with a message that says so."""
    runner = web.AppRunner(app, access_log=None, **{k: v for k, v in runner_options.items() if k != "backlog"})
    backlog = runner_options.get("backlog", 128)

    async def setup() -> None:
        host, _, port = listen.rpartition(":")
        await runner.setup()
        try:
            await web.TCPSite(runner, host, int(port), backlog=backlog).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {listen}: {exc.strerror}; is another instance running?") from None

    return Service(name, setup=setup, cleanup=runner.cleanup)


async def until_stopped(stop: asyncio.Event, work: Awaitable[None]) -> None:
    """Run `work` until it ends or `stop` is set (then cancel it): for a Service.run whose work does
    not watch the stop event itself (following a stream, a fixed number of steps)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            await cancel_quietly(task)
    if not task.cancelled():
        task.result()  # its error, if it failed


# --- helpers of long-running parts -------------------------------------------------------------------


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
