"""Talking to EVM nodes: web3 clients, the endpoint pool over a chain's `rpc_urls`, which errors are
the endpoint's fault (worth another endpoint) and which are the request's, and revert decoding.

Every RPC of the EVM package goes through a `PoolCall` — `call(what, fn)` where `fn` takes one
client — usually an `EndpointPool`'s `call`; `direct(w3)` wraps one client a caller owns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import aiohttp
from eth_abi import decode as abi_decode
from eth_utils import function_abi_to_4byte_selector
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError, ProviderConnectionError, TooManyRequests

from adapters.endpoints import EndpointPool

T = TypeVar("T")

PoolCall = Callable[[str, Callable[[AsyncWeb3], Awaitable[Any]]], Awaitable[Any]]


def is_retryable(exc: BaseException) -> bool:
    """Endpoint trouble (worth another endpoint or a later try), as opposed to a request the chain
    refuses (a revert, a bad transaction), which no retry fixes."""
    if isinstance(exc, ContractLogicError):
        return False
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status == 429 or exc.status >= 500
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ProviderConnectionError,
                        TooManyRequests, TimeoutError)):
        return True
    return isinstance(exc, OSError)


def make_client(url: str, timeout: float) -> AsyncWeb3:
    """An HTTP client with web3's own retries off: the pool decides, and fails over instead of
    hammering one node."""
    provider = AsyncHTTPProvider(
        url, exception_retry_configuration=None, request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}
    )
    return AsyncWeb3(provider)


def endpoint_pool(name: str, urls: Sequence[str], *, timeout: float, attempts: int = 4) -> EndpointPool[AsyncWeb3]:
    """The pool over a chain's endpoints, in configured order."""
    return EndpointPool(name, list(urls), lambda url: make_client(url, timeout), is_retryable,
                        attempts=attempts, timeout=timeout)


def given_client_pool(name: str, w3: AsyncWeb3, *, timeout: float) -> EndpointPool[AsyncWeb3]:
    """A one-endpoint pool over a client the caller owns (and closes)."""
    return EndpointPool(name, ["(given provider)"], lambda _url: w3, is_retryable, timeout=timeout)


def direct(w3: AsyncWeb3) -> PoolCall:
    """A PoolCall straight to one client: no failover, no retries (deployment scripts, tests)."""
    async def call(_what: str, fn: Callable[[AsyncWeb3], Awaitable[T]]) -> T:
        return await fn(w3)

    return call


class Coalescer:
    """Concurrent calls with the same key share one call in flight: the many messages of a batch
    asking about the same transaction, or the same final block, cost one RPC. Nothing is kept once
    the call returns (no staleness); a failure reaches every caller that shared it."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        future = self._inflight.get(key)
        if future is None or future.done() or future.get_loop() is not asyncio.get_running_loop():
            future = asyncio.ensure_future(fn())
            self._inflight[key] = future
            future.add_done_callback(lambda done, key=key: self._forget(key, done))
        return await asyncio.shield(future)

    def _forget(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved: every caller that shared it has it already


def to_hex(data: bytes) -> str:
    """0x-hex of bytes (hashes, topics, calldata as web3 returns them)."""
    return "0x" + bytes(data).hex()


# --- revert reasons -----------------------------------------------------------------------


def decode_revert(abi: list[dict[str, Any]], data: str | bytes | None) -> str:
    """A readable revert reason: custom errors from the ABI by name, Error(string), Panic(uint)."""
    if data is None:
        return "no revert data (out of gas, or a failing precompile without a reason)"
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return f"revert data 0x{raw.hex()}" if raw else "reverted without data"
    selector, body = raw[:4], raw[4:]
    if selector == bytes.fromhex("08c379a0"):
        return f"Error({abi_decode(['string'], body)[0]!r})"
    if selector == bytes.fromhex("4e487b71"):
        return f"Panic(0x{abi_decode(['uint256'], body)[0]:02x})"
    for entry in abi:
        if entry.get("type") != "error":
            continue
        if function_abi_to_4byte_selector(entry) == selector:
            types = [i["type"] for i in entry.get("inputs", [])]
            try:
                values = abi_decode(types, body) if types else ()
            except Exception:  # noqa: BLE001 - malformed body: still name the error
                return f"{entry['name']}(<undecodable 0x{body.hex()}>)"
            shown = ", ".join("0x" + v.hex() if isinstance(v, bytes) else str(v) for v in values)
            return f"{entry['name']}({shown})"
    return f"unknown error 0x{raw.hex()}"


def revert_data(error: BaseException) -> str | None:
    """The revert data web3 attached to a ContractLogicError, if any."""
    data = getattr(error, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) else None


def error_entries(abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The custom errors of an ABI (to decode reverts bubbled up from another contract)."""
    return [e for e in abi if e.get("type") == "error"]
