"""What the platform team sets for the whole operator (Helm values), as opposed to a user's spec.

Every field has an environment variable (the chart sets them from its values); see from_env.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional

from finetune_api import endpoints


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    trainer_image: str = "finetune-operator/trainer:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    metrics_port: int = 9090
    rendezvous_port: int = 29500
    # Long enough for the trainer to finish a step and upload a checkpoint after SIGTERM.
    termination_grace_seconds: int = 300
    validate_cpu: str = "1"
    validate_memory: str = "2Gi"
    # Where validate-only pods run (a CPU pool); empty: anywhere the scheduler likes.
    validate_node_selector: dict = dataclasses.field(default_factory=dict)
    validate_tolerations: list = dataclasses.field(default_factory=list)
    work_dir: str = "/var/lib/finetune/work"
    # Per-namespace caps on what runs at once; further jobs wait (phase Queued) in creation order.
    max_running_jobs_per_namespace: Optional[int] = None
    max_gpus_per_namespace: Optional[int] = None
    # How often a running trainer's /progress is read into status.
    progress_interval_seconds: float = 3.0
    # Default Prometheus for ModelVersion analysis and rollback queries.
    prometheus_url: str = ""
    # Other Prometheus base URLs a ModelVersion's prometheusUrl may name (the default above always may),
    # and the label every tenant selector is scoped by (modelversion/promql.py).
    prometheus_allowed_urls: tuple = ()
    prometheus_namespace_label: str = "namespace"
    # Total deadlines and size caps of the operator's S3 reads (storage.py): one API call, retries
    # included; one manifest's whole verification; what a manifest may list.
    s3_call_seconds: float = 20.0
    s3_verify_seconds: float = 120.0
    max_manifest_bytes: int = 1 << 20
    max_manifest_files: int = 1000
    max_adapter_file_bytes: int = 4 << 30
    # Which scheduling fields and pod annotations tenants may set, per namespace (builders/scheduling.py);
    # None (FTO_SCHEDULING_POLICY unset or empty): not restricted beyond the built-in refusals.
    scheduling_policy: Optional[dict] = None
    # In-cluster moderation endpoints a FineTuneJob's spec.dataSafety.moderation.endpoint may name:
    # {name: http(s) URL}. Tenants name one, never give a URL; each URL passes finetune_api.endpoints.
    moderation_endpoints: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Optional[dict] = None) -> "OperatorSettings":
        env = os.environ if env is None else env
        d = cls()

        def opt_int(name):
            return int(env[name]) if env.get(name, "") != "" else None

        return cls(
            trainer_image=env.get("FTO_TRAINER_IMAGE", d.trainer_image),
            image_pull_policy=env.get("FTO_IMAGE_PULL_POLICY", d.image_pull_policy),
            metrics_port=int(env.get("FTO_TRAINER_METRICS_PORT", d.metrics_port)),
            termination_grace_seconds=int(env.get("FTO_TERMINATION_GRACE_SECONDS", d.termination_grace_seconds)),
            validate_cpu=env.get("FTO_VALIDATE_CPU", d.validate_cpu),
            validate_memory=env.get("FTO_VALIDATE_MEMORY", d.validate_memory),
            validate_node_selector=json.loads(env.get("FTO_VALIDATE_NODE_SELECTOR") or "{}"),
            validate_tolerations=json.loads(env.get("FTO_VALIDATE_TOLERATIONS") or "[]"),
            work_dir=env.get("FTO_WORK_DIR", d.work_dir),
            max_running_jobs_per_namespace=opt_int("FTO_MAX_RUNNING_JOBS_PER_NAMESPACE"),
            max_gpus_per_namespace=opt_int("FTO_MAX_GPUS_PER_NAMESPACE"),
            progress_interval_seconds=float(env.get("FTO_PROGRESS_INTERVAL_SECONDS", d.progress_interval_seconds)),
            prometheus_url=env.get("FTO_PROMETHEUS_URL", d.prometheus_url),
            prometheus_allowed_urls=tuple(u.strip() for u in env.get("FTO_PROMETHEUS_ALLOWED_URLS", "").split(",")
                                          if u.strip()),
            prometheus_namespace_label=env.get("FTO_PROMETHEUS_NAMESPACE_LABEL") or d.prometheus_namespace_label,
            s3_call_seconds=float(env.get("FTO_S3_CALL_SECONDS") or d.s3_call_seconds),
            s3_verify_seconds=float(env.get("FTO_S3_VERIFY_SECONDS") or d.s3_verify_seconds),
            max_manifest_bytes=int(env.get("FTO_MAX_MANIFEST_BYTES") or d.max_manifest_bytes),
            max_manifest_files=int(env.get("FTO_MAX_MANIFEST_FILES") or d.max_manifest_files),
            max_adapter_file_bytes=int(env.get("FTO_MAX_ADAPTER_FILE_BYTES") or d.max_adapter_file_bytes),
            scheduling_policy=json.loads(env["FTO_SCHEDULING_POLICY"]) if env.get("FTO_SCHEDULING_POLICY") else None,
            moderation_endpoints=moderation_endpoints(json.loads(env.get("FTO_MODERATION_ENDPOINTS") or "{}")),
        )


MODERATION_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def moderation_endpoints(value) -> dict:
    """The admin's {name: url} list, checked: names are DNS labels, URLs are http(s)://host[:port][/path]
    that finetune_api.endpoints allows. A bad entry stops the operator at start (an admin error: the
    message names the entry, never the whole URL list)."""
    if not isinstance(value, dict):
        raise ValueError("FTO_MODERATION_ENDPOINTS (dataSafety.moderationEndpoints) must be a JSON object "
                         "{name: url}")
    for name, url in value.items():
        if not isinstance(name, str) or not MODERATION_NAME.match(name) or len(name) > 63:
            raise ValueError(f"dataSafety.moderationEndpoints: {name!r} is not a DNS label")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"dataSafety.moderationEndpoints.{name} must be an http(s):// URL")
        refused = endpoints.refusal(url)
        if refused:
            raise ValueError(f"dataSafety.moderationEndpoints.{name} is refused: {refused}")
    return dict(value)
