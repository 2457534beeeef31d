"""One way to wait in a test: poll a condition until it holds, or fail saying what was awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float = 60.0, what: str | None = None,
                   interval: float = 0.05) -> T:
    """Call `predicate` (a plain or an async callable) every `interval` seconds until it returns a
    truthy value, and return that value; after `timeout` seconds raise AssertionError naming `what`
    (the predicate's name when not given)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or _describe(predicate)}")
        await asyncio.sleep(interval)


def _describe(predicate: Any) -> str:
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    return "a condition" if "<lambda>" in name else name
