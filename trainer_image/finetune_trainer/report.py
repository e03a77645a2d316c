"""How the trainer reports while it runs: Prometheus metrics and a progress document.

One small HTTP server on the pod IP (rank 0 only):
  /metrics   Prometheus text: step, epoch, losses, learning rate, tokens/s, samples/s, ETA, GPU memory
  /progress  the same as one JSON document, plus the phase and the checkpoints saved
  /healthz   200 while the process is alive
The operator polls /progress every few seconds to fill FineTuneJob.status.progress; the
document's keys are the contract in finetune_api.progress. Prometheus scrapes /metrics. Nothing
is written to S3 for progress, so reporting costs no storage calls.
"""
from __future__ import annotations

import datetime
import http.server
import json
import threading
import time

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from finetune_api import progress as contract

GAUGES = {
    "step": "Optimiser steps done.",
    "total_steps": "Optimiser steps planned.",
    "epoch": "Epochs done (fractional).",
    "train_loss": "Latest training loss (mean over the last logging window).",
    "eval_loss": "Latest validation loss.",
    "learning_rate": "Current learning rate.",
    "tokens_per_second": "Training throughput in real (non-padding) tokens per second, all processes.",
    "samples_per_second": "Training throughput in examples per second, all processes.",
    "eta_seconds": "Estimated seconds until training ends.",
    "gpu_memory_bytes": "Peak CUDA memory allocated by this process.",
}


class Reporter:
    def __init__(self, job_namespace: str, job_name: str, enabled: bool = True):
        self.enabled = enabled
        self.registry = CollectorRegistry()
        labels = {"namespace": job_namespace, "job": job_name}
        self.gauges = {k: Gauge(f"fto_trainer_{k}", doc, list(labels), registry=self.registry).labels(**labels)
                       for k, doc in GAUGES.items()}
        self.progress = contract.initial()
        self._lock = threading.Lock()
        self._server = None
        self._t0 = time.monotonic()

    def update(self, **values) -> None:
        unknown = contract.unknown_keys(values)
        if unknown:
            raise ValueError(f"not keys of the /progress document (finetune_api.progress): {unknown}")
        if values.get("phase") is not None and values["phase"] not in contract.PHASES:
            raise ValueError(f"not a /progress phase: {values['phase']!r}")
        with self._lock:
            self.progress.update({k: v for k, v in values.items() if v is not None})
            self.progress["updatedAt"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            mapping = {"step": "step", "totalSteps": "total_steps", "epoch": "epoch", "trainLoss": "train_loss",
                       "evalLoss": "eval_loss", "learningRate": "learning_rate", "tokensPerSecond": "tokens_per_second",
                       "samplesPerSecond": "samples_per_second", "etaSeconds": "eta_seconds",
                       "gpuMemoryBytes": "gpu_memory_bytes"}
            for key, gauge in mapping.items():
                if values.get(key) is not None:
                    self.gauges[gauge].set(values[key])

    def add_checkpoint(self, entry: dict) -> None:
        with self._lock:
            self.progress["checkpoints"] = [c for c in self.progress["checkpoints"] if c["uri"] != entry["uri"]]
            self.progress["checkpoints"].append(entry)

    def forget_checkpoints(self, keep_uris: set) -> None:
        with self._lock:
            self.progress["checkpoints"] = [c for c in self.progress["checkpoints"] if c["uri"] in keep_uris]

    def snapshot(self) -> dict:
        with self._lock:
            return json.loads(json.dumps(self.progress))

    def serve(self, host: str, port: int) -> int:
        """Starts the HTTP server; returns the bound port (port 0 picks a free one)."""
        if not self.enabled:
            return 0
        reporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/metrics":
                    body, ctype = generate_latest(reporter.registry), CONTENT_TYPE_LATEST
                elif self.path == contract.PATH:
                    body, ctype = json.dumps(reporter.snapshot()).encode(), "application/json"
                elif self.path == "/healthz":
                    body, ctype = b"ok", "text/plain"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="report").start()
        return self._server.server_address[1]

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
