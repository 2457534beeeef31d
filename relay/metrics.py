"""Prometheus metrics of a relayer (one registry per instance, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from relay.store import RetryReason, Stage

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
