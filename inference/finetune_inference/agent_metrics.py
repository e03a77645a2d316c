"""The adapter agent's Prometheus metrics (names shared with the operator's PromQL: fto_agent_*)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# Prometheus scrapes the counters themselves; the *_created series only add noise to every dashboard.
disable_created_metrics()

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class AgentMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["model", "version", "digest"]
        self.requests = Counter("fto_agent_requests_total", "Client requests by routed model/version and HTTP code",
                                labels + ["code"], registry=self.registry)
        self.duration = Histogram("fto_agent_request_duration_seconds", "Client request time through the agent",
                                  labels, registry=self.registry, buckets=LATENCY_BUCKETS)
        self.alias_weight = Gauge("fto_agent_alias_weight", "Percent of an alias's traffic routed to a version",
                                  labels, registry=self.registry)
        self.adapters_loaded = Gauge("fto_agent_adapters_loaded", "Adapters loaded in the engine (as last seen)",
                                     registry=self.registry)
        self.load_seconds = Histogram("fto_agent_adapter_load_seconds",
                                      "Preload time: download, verify and load into the engine",
                                      registry=self.registry, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))

    def set_aliases(self, rows: list) -> None:
        """rows: [(model, version, digest, weight)]; series for routes that no longer exist are removed."""
        self.alias_weight.clear()
        for model, version, digest, weight in rows:
            self.alias_weight.labels(model, version, digest).set(weight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
