"""Deterministic child names and the labels every child carries."""
from __future__ import annotations

import hashlib

MAX_NAME = 63  # DNS label: Services, pod hostnames and label values are limited to 63 characters
MANAGED_BY = "finetune-operator"
# On every pod the operator makes (directly or through a Job): the FineTuneJob's full name, which
# the 63-character label may have had to shorten. The operator's watch maps pod events with it.
FINETUNEJOB_ANNOTATION = "finetune.fto.dev/finetunejob"
# A FineTuneJob annotation whose value, a JSON object, is added to its pods' annotations (service
# mesh opt-outs, autoscaler hints, kwok's fake lifecycles in tests).
POD_ANNOTATIONS_ANNOTATION = "finetune.fto.dev/pod-annotations"
TRAINER_POD_ANNOTATIONS_ANNOTATION = "finetune.fto.dev/trainer-pod-annotations"  # the same, trainer pods only


def child_name(owner: str, role: str, limit: int = MAX_NAME) -> str:
    """'<owner>-<role>', shortened with a stable hash when it would exceed the limit."""
    name = f"{owner}-{role}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(owner.encode()).hexdigest()[:8]
    keep = limit - len(role) - len(digest) - 2
    return f"{owner[:keep].rstrip('-')}-{digest}-{role}"


def labels(job_name: str, component: str) -> dict:
    return {
        "app.kubernetes.io/name": "finetune-trainer",
        "app.kubernetes.io/instance": job_name[:MAX_NAME],
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "finetune.fto.dev/job": job_name[:MAX_NAME],
    }


def owner_reference(obj: dict) -> dict:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}
