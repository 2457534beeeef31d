"""Prometheus metrics of a relayer (one registry per instance, so tests can run several), and the
wallet-balance gauge every daemon that spends from an account exports (`WalletBalances`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from relay.aio import wait_event
from relay.log import get_logger
from relay.store import RetryReason, Stage

log = get_logger("metrics")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class RelayerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue = Gauge(
            "tessera_messages", "Messages by pipeline stage and retry reason (RetryReason values; '' for none)",
            ["stage", "reason"], registry=self.registry
        )
        self.deliveries = Counter(
            "tessera_deliveries", "Messages confirmed delivered", ["src_domain", "dst_domain", "by"], registry=self.registry
        )
        self.stage_latency = Histogram(
            "tessera_stage_latency_seconds",
            "Time from observation to reaching a stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter("tessera_retries", "Retries scheduled by stage and reason (RetryReason values)",
                               ["stage", "reason"], registry=self.registry)
        self.dead_letters = Counter("tessera_dead_letters", "Messages sent to the dead letter, by last reason",
                                    ["reason"], registry=self.registry)
        self.refused_unpaid = Counter("tessera_relayer_refused_unpaid", "Messages the payment policy refused "
                                      "(relay/policy.py), by source domain", ["src_domain"], registry=self.registry)
        self.faulty_partials = Counter("tessera_faulty_partials", "Invalid partial signatures by member",
                                       ["member"], registry=self.registry)
        self.rpc_errors = Gauge("tessera_rpc_errors", "RPC errors per chain endpoint (total since start)",
                                ["chain", "endpoint"], registry=self.registry)
        self.rpc_healthy = Gauge("tessera_rpc_endpoint_healthy", "1 if the endpoint answered its last request",
                                 ["chain", "endpoint"], registry=self.registry)

    def set_queue(self, counts: dict[tuple[Stage, RetryReason | None], int]) -> None:
        self.queue.clear()
        for (stage, reason), n in counts.items():
            self.queue.labels(stage=stage.value, reason=reason.value if reason else "").set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_response(*registries: CollectorRegistry) -> web.Response:
    """GET /metrics of a daemon: the Prometheus text of its registries."""
    body = b"".join(generate_latest(r) for r in registries)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


# --- wallet balances ------------------------------------------------------------------------------

WALLET_REFRESH_S = 30.0  # balances change by fees: reading them every half minute is plenty


@dataclass(frozen=True, slots=True)
class Wallet:
    """Accounts one daemon spends from on one chain: `read` is an adapter's, board's or feed
    target's `wallet_balances` (relay.interfaces), returning {address: balance in smallest unit}."""

    chain: str
    read: Callable[[], Awaitable[dict[str, int]]]


class WalletBalances:
    """`tessera_wallet_balance{daemon,chain,account}` (smallest unit: wei, lamports) on a daemon's
    registry, read through the interfaces every `interval` seconds, so an operator's alert fires
    before a relayer, worker or pusher runs out of fees. A chain whose read fails keeps its last
    value (the RPC health metrics say why) and is read again next time."""

    def __init__(self, registry: CollectorRegistry, daemon: str, wallets: Sequence[Wallet],
                 interval: float = WALLET_REFRESH_S) -> None:
        self.daemon = daemon
        self.wallets = list(wallets)
        self.interval = interval
        self.gauge = Gauge("tessera_wallet_balance",
                           "Native balance of an account the daemon spends from, in the chain's smallest unit",
                           ["daemon", "chain", "account"], registry=registry)
        self.read_errors = Counter("tessera_wallet_balance_read_errors", "Failed balance reads, by chain",
                                   ["daemon", "chain"], registry=registry)

    async def refresh(self) -> None:
        for wallet in self.wallets:
            try:
                balances = await wallet.read()
            except Exception as exc:  # an RPC outage: keep the last value, say so, try again later
                self.read_errors.labels(daemon=self.daemon, chain=wallet.chain).inc()
                log.warning("wallet balance read failed", daemon=self.daemon, chain=wallet.chain,
                            error=f"{type(exc).__name__}: {exc}")
                continue
            for account, balance in balances.items():
                self.gauge.labels(daemon=self.daemon, chain=wallet.chain, account=account).set(balance)

    async def run(self, stop: asyncio.Event) -> None:
        """A daemon service's run: refresh now, then every `interval` until `stop`."""
        while not stop.is_set():
            await self.refresh()
            await wait_event(stop, self.interval)
