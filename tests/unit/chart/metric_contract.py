"""The metric names the components export (the contract in the engineers' notes), and which are
histograms. The dashboard and the rules may only use these; a live test compares with /metrics."""
from __future__ import annotations

import re

OPERATOR = {
    "fto_operator_jobs", "fto_operator_job_retries_total", "fto_operator_job_failures_total",
    "fto_operator_gpu_seconds_total", "fto_operator_modelversions", "fto_operator_promotions_total",
    "fto_operator_rollbacks_total", "fto_operator_gate_failures_total", "fto_operator_version_skew",
}
OPERATOR_HISTOGRAMS = {
    "fto_operator_reconcile_duration_seconds", "fto_operator_job_start_latency_seconds",
    "fto_operator_adapter_load_seconds", "fto_operator_rollback_duration_seconds",
}
TRAINER = {f"fto_trainer_{n}" for n in ("step", "total_steps", "epoch", "train_loss", "eval_loss", "learning_rate",
                                        "tokens_per_second", "samples_per_second", "eta_seconds", "gpu_memory_bytes")}
AGENT = {"fto_agent_requests_total", "fto_agent_alias_weight", "fto_agent_adapters_loaded"}
AGENT_HISTOGRAMS = {"fto_agent_request_duration_seconds", "fto_agent_adapter_load_seconds"}

HISTOGRAMS = OPERATOR_HISTOGRAMS | AGENT_HISTOGRAMS
SERIES = OPERATOR | TRAINER | AGENT | {f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

_NAME = re.compile(r"\bfto_[a-z0-9_]+\b")
_RECORDED = re.compile(r"\bfto:[a-zA-Z0-9_:]+\b")


def metric_names(expr: str) -> set[str]:
    """fto_* series an expression reads (label names never start with fto_, so a regex is enough)."""
    return set(_NAME.findall(expr))


def recorded_names(expr: str) -> set[str]:
    return set(_RECORDED.findall(expr))
