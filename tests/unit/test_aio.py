"""relay.aio: waits that a cancellation always stops, even when it arrives in the same loop iteration
as the awaited event (where Python 3.11's asyncio.wait_for returns normally and swallows it)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from relay.aio import wait_event, within


async def _poll_forever(event: asyncio.Event, wait) -> None:
    while True:
        await wait(event)
        event.clear()


async def _cancel_as_the_event_fires(wait) -> bool:
    """True when the polling task stopped on cancel; False when it kept running."""
    event = asyncio.Event()
    task = asyncio.create_task(_poll_forever(event, wait))
    await asyncio.sleep(0.01)  # the task is inside its wait
    event.set()
    task.cancel()  # same iteration: the event's waiter completes before the task sees the cancel
    done, _ = await asyncio.wait({task}, timeout=0.5)
    if not done:
        task.cancel()  # the test's own cleanup: a second cancel reaches the next wait
        await asyncio.wait({task}, timeout=0.5)
        return False
    return task.cancelled()


async def test_wait_event_stops_when_cancelled_as_the_event_is_set() -> None:
    assert await _cancel_as_the_event_fires(lambda e: wait_event(e, 10.0))


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the wait_for race was fixed in Python 3.12")
async def test_the_race_it_avoids_is_real_on_this_python() -> None:
    # Documents why relay.aio exists: asyncio.wait_for swallows this cancellation on 3.11.
    assert not await _cancel_as_the_event_fires(lambda e: asyncio.wait_for(e.wait(), 10.0))


async def test_wait_event_results() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    assert await wait_event(event, 0) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(event, 0) is True


async def test_within() -> None:
    assert await within(asyncio.sleep(0, result=7), 1.0) == 7
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.01)
