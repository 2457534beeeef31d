"""The feed server's Prometheus metrics (served at GET /metrics), one registry per server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class FeedMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reports = Counter("tessera_feed_reports", "reports posted to the server, by outcome",
                               ["result"], registry=self.registry)
        self.subscribers = Gauge("tessera_feed_subscribers", "open stream subscriptions", ["transport"],
                                 registry=self.registry)
        self.dropped = Counter("tessera_feed_dropped_subscribers", "subscribers disconnected for being too slow",
                               ["transport"], registry=self.registry)
        self.fanout = Histogram("tessera_feed_fanout_seconds", "time to hand one event to every subscriber",
                                buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
                                registry=self.registry)
        self.latest_round = Gauge("tessera_feed_latest_round", "latest round served", ["feed"], registry=self.registry)
        self.stale = Gauge("tessera_feed_stale", "1 when the feed is stale", ["feed"], registry=self.registry)
