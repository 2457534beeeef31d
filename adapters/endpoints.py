"""Several RPC endpoints per chain: fail over between them, retry with backoff, keep per-endpoint
health for /health and /metrics. One dead endpoint never blocks start-up or a request.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

from relay.aio import within
from relay.interfaces import EndpointHealth
from relay.errors import TesseraError
from relay.log import get_logger

C = TypeVar("C")  # a client object for one endpoint (AsyncWeb3, AsyncClient, ...)
T = TypeVar("T")

log = get_logger("endpoints")


class AllEndpointsFailed(TesseraError):
    """Every configured endpoint failed for one request (after retries)."""


class EndpointPool(Generic[C]):
    """Calls go to the healthiest endpoint first; on an error the next one is tried, and the
    whole round is retried with jittered exponential backoff up to `attempts` times.

    `is_retryable(exc)` decides whether an error is the endpoint's fault (connection refused,
    timeout, HTTP 429/5xx) or the request's (a revert, an invalid transaction), which is raised
    at once without failing over.
    """

    def __init__(
        self,
        chain: str,
        urls: Sequence[str],
        make_client: Callable[[str], C],
        is_retryable: Callable[[BaseException], bool],
        *,
        attempts: int = 4,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        if not urls:
            raise TesseraError(f"{chain}: no RPC endpoint configured (rpc_urls is empty)")
        self.chain = chain
        self._clients: list[tuple[EndpointHealth, C]] = [(EndpointHealth(url=u), make_client(u)) for u in urls]
        self._is_retryable = is_retryable
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout

    @property
    def clients(self) -> list[C]:
        return [client for _, client in self._clients]

    def health(self) -> list[EndpointHealth]:
        return [h for h, _ in self._clients]

    @property
    def preferred(self) -> C:
        """The client the next call tries first (healthy, fewest recent errors, configured order)."""
        return self._ordered()[0][1]

    def _ordered(self) -> list[tuple[EndpointHealth, C]]:
        # Healthy first, in configured order (the first is the preferred one); then the others.
        return sorted(self._clients, key=lambda hc: (not hc[0].healthy, hc[0].consecutive_errors))

    async def call(self, what: str, fn: Callable[[C], Awaitable[T]]) -> T:
        last: BaseException | None = None
        for attempt in range(self.attempts):
            for health, client in self._ordered():
                started = time.perf_counter()
                try:
                    result = await within(fn(client), self.timeout)
                except Exception as exc:
                    if not self._is_retryable(exc) and not isinstance(exc, asyncio.TimeoutError):
                        raise
                    last = exc
                    health.healthy = False
                    health.consecutive_errors += 1
                    health.total_errors += 1
                    health.last_error = f"{type(exc).__name__}: {exc}"[:200]
                    log.warning("rpc error", chain=self.chain, endpoint=health.url, call=what,
                                error=health.last_error, attempt=attempt + 1)
                    continue
                health.healthy = True
                health.consecutive_errors = 0
                health.last_latency_ms = (time.perf_counter() - started) * 1000
                return result
            if attempt + 1 < self.attempts:
                delay = min(self.max_delay, self.base_delay * 2**attempt)
                await asyncio.sleep(delay * random.uniform(0.75, 1.25))
        raise AllEndpointsFailed(
            f"{self.chain}: {what} failed on every endpoint ({', '.join(h.url for h, _ in self._clients)}) "
            f"after {self.attempts} rounds; last error: {last}. Check that the nodes are up and reachable."
        )
