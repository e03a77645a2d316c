"""The trainer's config (finetune_trainer.config), rendered from a FineTuneJob into a ConfigMap."""
from __future__ import annotations

import json

from . import names
from .settings import OperatorSettings

CONFIG_KEY = "config.json"
CONFIG_MOUNT = "/etc/finetune"


def render(ftj: dict, attempt: int, settings: OperatorSettings) -> dict:
    meta = ftj["metadata"]
    return {
        "job": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"], "attempt": attempt},
        "spec": ftj["spec"],
        "runtime": {"metricsPort": settings.metrics_port, "workDir": settings.work_dir},
    }


def config_map(ftj: dict, attempt: int, settings: OperatorSettings) -> dict:
    name = ftj["metadata"]["name"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": names.child_name(name, "config"), "namespace": ftj["metadata"]["namespace"],
                     "labels": names.labels(name, "config"), "ownerReferences": [names.owner_reference(ftj)]},
        "data": {CONFIG_KEY: json.dumps(render(ftj, attempt, settings), indent=1, sort_keys=True)},
    }
