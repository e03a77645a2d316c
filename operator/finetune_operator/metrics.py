"""The operator's Prometheus metrics (prometheus-client), served on --metrics-address.

Names follow Prometheus conventions: base units (seconds), _total for counters, labels for
the dimensions people filter on (namespace, phase, reason, model).
"""
from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry()

RECONCILE_SECONDS = Histogram(
    "fto_operator_reconcile_duration_seconds", "Time one reconcile pass takes, by kind.", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
RECONCILES = Counter("fto_operator_reconciles_total", "Reconcile passes run, by kind (errors included).", ["kind"],
                     registry=REGISTRY)
STATUS_WRITES = Counter("fto_operator_status_writes_total", "Status writes the passes made, by kind (a pass that "
                        "changes nothing writes nothing).", ["kind"], registry=REGISTRY)
RECONCILE_ERRORS = Counter("fto_operator_reconcile_errors_total", "Passes that failed with an unexpected error, by "
                           "kind (each also posts a ReconcileError Warning Event).", ["kind"], registry=REGISTRY)
JOB_START_LATENCY = Histogram(
    "fto_operator_job_start_latency_seconds",
    "From a FineTuneJob's creation to its first trainer pod running (validation and queueing included).",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200), registry=REGISTRY)
JOB_RETRIES = Counter("fto_operator_job_retries_total", "Trainer relaunches after retryable failures.",
                      ["namespace"], registry=REGISTRY)
JOB_FAILURES = Counter("fto_operator_job_failures_total", "FineTuneJobs that ended Failed, by reason.",
                       ["namespace", "reason"], registry=REGISTRY)
GPU_SECONDS = Counter("fto_operator_gpu_seconds_total", "GPU time used by trainer pods (GPUs x seconds).",
                      ["namespace"], registry=REGISTRY)
# ModelVersion controller.
PROMOTIONS = Counter("fto_operator_promotions_total", "Promotions to production, by result.",
                     ["namespace", "model", "result"], registry=REGISTRY)
ROLLBACKS = Counter("fto_operator_rollbacks_total", "Rollbacks, by what triggered them.",
                    ["namespace", "model", "trigger"], registry=REGISTRY)
GATE_FAILURES = Counter("fto_operator_gate_failures_total", "ModelVersions refused by their gates.",
                        ["namespace", "model"], registry=REGISTRY)
ADAPTER_LOAD_SECONDS = Histogram(
    "fto_operator_adapter_load_seconds", "Time for a serving pod to preload an adapter (download, verify, load).",
    ["namespace", "model"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=REGISTRY)
ROLLBACK_SECONDS = Histogram(
    "fto_operator_rollback_duration_seconds", "From a breach seen to every pod serving the previous version.",
    ["namespace", "model"], buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30), registry=REGISTRY)
VERSION_SKEW = Gauge("fto_operator_version_skew",
                     "Serving pods whose model alias does not point at the production version.",
                     ["namespace", "model"], registry=REGISTRY)


class ObjectStates:
    """The last phase seen per object, exported as gauges counted by (namespace, phase, ...).

    Reconcilers report each object's phase; deleted objects are forgotten. Counting at scrape
    time keeps the gauges exact without increments that a restart would lose.
    """

    def __init__(self, name: str, documentation: str, labels: tuple):
        self.name, self.documentation, self.labels = name, documentation, labels
        self._lock = threading.Lock()
        self._by_key: dict = {}

    def set(self, key, **labels) -> None:
        with self._lock:
            self._by_key[key] = tuple(str(labels.get(k, "")) for k in self.labels)

    def forget(self, key) -> None:
        with self._lock:
            self._by_key.pop(key, None)

    def collect(self):
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        counts: dict = {}
        with self._lock:
            for values in self._by_key.values():
                counts[values] = counts.get(values, 0) + 1
        for values, n in sorted(counts.items()):
            family.add_metric(list(values), n)
        yield family

    def describe(self):
        return []


JOBS = ObjectStates("fto_operator_jobs", "FineTuneJobs by namespace and phase.", ("namespace", "phase"))
MODEL_VERSIONS = ObjectStates("fto_operator_modelversions", "ModelVersions by namespace, model, stage and phase.",
                              ("namespace", "model", "stage", "phase"))
REGISTRY.register(JOBS)
REGISTRY.register(MODEL_VERSIONS)


def serve(address: str) -> None:
    """Starts the /metrics HTTP server on 'host:port' (host may be empty for all interfaces)."""
    from prometheus_client import start_http_server
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)
