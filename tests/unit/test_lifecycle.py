"""relay.lifecycle.run_daemon: set up in order, run together, the first failure stops the rest,
clean up in reverse order (also after a failed setup), stop on the stop event or a signal."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from aiohttp import web

from relay.errors import ConfigError
from relay.lifecycle import Service, http_service, run_daemon, until_stopped


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def service(self, name: str, *, run=None, fail_setup: bool = False) -> Service:
        async def setup() -> None:
            self.events.append(f"setup {name}")
            if fail_setup:
                raise ConfigError(f"{name} cannot start")

        def cleanup() -> None:  # plain functions are accepted too
            self.events.append(f"cleanup {name}")

        return Service(name, run=run, setup=setup, cleanup=cleanup)


async def test_a_failing_service_stops_the_others_and_cleanup_runs_in_reverse_order() -> None:
    rec = Recorder()
    stopped_by: list[str] = []

    async def waits(stop: asyncio.Event) -> None:
        try:
            await stop.wait()
            stopped_by.append("stop event")
        except asyncio.CancelledError:
            stopped_by.append("cancelled")
            raise

    async def fails(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.01)
        raise ConfigError("chain unreachable")

    services = [rec.service("store"), rec.service("watcher", run=waits), rec.service("http", run=fails)]
    with pytest.raises(ConfigError, match="chain unreachable"):  # the error itself, not an ExceptionGroup
        await asyncio.wait_for(run_daemon("test", services, asyncio.Event()), 5)
    assert len(stopped_by) == 1  # the other service was stopped (told to, or cancelled), not left running
    assert rec.events == ["setup store", "setup watcher", "setup http",
                          "cleanup http", "cleanup watcher", "cleanup store"]


async def test_the_stop_event_ends_every_run_then_cleanup() -> None:
    rec = Recorder()
    stop = asyncio.Event()
    ended: list[str] = []

    def until_stop(name: str):
        async def run(stop: asyncio.Event) -> None:
            await stop.wait()
            ended.append(name)
        return run

    daemon = asyncio.create_task(run_daemon("test", [rec.service("a", run=until_stop("a")),
                                                     rec.service("b", run=until_stop("b"))], stop))
    await asyncio.sleep(0.02)
    assert not daemon.done() and rec.events == ["setup a", "setup b"]
    stop.set()
    await asyncio.wait_for(daemon, 5)
    assert sorted(ended) == ["a", "b"]
    assert rec.events[2:] == ["cleanup b", "cleanup a"]


async def test_a_daemon_of_services_without_run_lives_until_stopped() -> None:
    rec = Recorder()
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_daemon("test", [rec.service("http")], stop))
    await asyncio.sleep(0.05)
    assert not daemon.done() and rec.events == ["setup http"]
    stop.set()
    await asyncio.wait_for(daemon, 5)
    assert rec.events == ["setup http", "cleanup http"]


async def test_a_service_that_returns_ends_the_daemon() -> None:
    rec = Recorder()

    async def finite(stop: asyncio.Event) -> None:
        await until_stopped(stop, asyncio.sleep(0.01))  # work that does not watch the event itself

    async def forever(stop: asyncio.Event) -> None:
        await stop.wait()

    await asyncio.wait_for(run_daemon("test", [rec.service("a", run=forever), rec.service("b", run=finite)],
                                      asyncio.Event()), 5)
    assert rec.events[-2:] == ["cleanup b", "cleanup a"]


async def test_a_failed_setup_cleans_up_what_was_set_up_and_runs_nothing() -> None:
    rec = Recorder()
    ran: list[str] = []

    async def run(stop: asyncio.Event) -> None:
        ran.append("run")

    services = [rec.service("a", run=run), rec.service("b", fail_setup=True), rec.service("c", run=run)]
    with pytest.raises(ConfigError, match="b cannot start"):
        await run_daemon("test", services, asyncio.Event())
    assert ran == []
    assert rec.events == ["setup a", "setup b", "cleanup a"]  # b's own cleanup: its setup never finished


async def test_sigterm_stops_a_daemon_without_a_stop_event() -> None:
    rec = Recorder()

    async def forever(stop: asyncio.Event) -> None:
        await stop.wait()

    daemon = asyncio.create_task(run_daemon("test", [rec.service("a", run=forever)]))
    await asyncio.sleep(0.02)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(daemon, 5)
    assert rec.events == ["setup a", "cleanup a"]
    # The handlers are removed again: the loop no longer owns SIGTERM.
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


async def test_http_service_refuses_a_taken_port_with_a_clear_error() -> None:
    first = http_service("http", web.Application(), "127.0.0.1:0")
    await first.setup()
    try:
        # Find the port the first one got, then try to take it again.
        port = first.cleanup.__self__.addresses[0][1]  # type: ignore[union-attr]
        second = http_service("http", web.Application(), f"127.0.0.1:{port}")
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await second.setup()
    finally:
        await first.cleanup()
