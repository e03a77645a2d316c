"""Snapshots for decide's tests: a FineTuneJob and its children as the apiserver would show them."""
from __future__ import annotations

import copy
import json

from finetune_operator.builders import trainer_config
from finetune_operator.builders.settings import OperatorSettings
from finetune_operator.finetunejob.snapshot import Capacity, Preflight, Snapshot, Verified, defaulted_spec

NOW = 1_800_000_000.0
SETTINGS = OperatorSettings()
CAPPED = OperatorSettings(max_running_jobs_per_namespace=1)


def ftj(name="bot", status=None, generation=1, **spec_extra) -> dict:
    spec = {"baseModel": {"name": "smollm2"}, "dataset": {"uri": "s3://data/train.jsonl", "format": "chat"},
            "output": {"uri": f"s3://out/{name}/"}}
    for key, value in spec_extra.items():
        spec[key] = value
    return {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1", "generation": generation,
                         "resourceVersion": "10", "creationTimestamp": "2027-01-15T08:00:00Z"},
            "spec": spec, "status": copy.deepcopy(status or {})}


def cond(ctype, status, reason, message="m", generation=1):
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2027-01-15T08:00:00Z", "observedGeneration": generation}


VALIDATED = cond("Validated", "True", "DatasetValid")


def pod(phase="Running", message=None, exit_code=None, reason=None, ip="127.2.0.5", index="0", started=NOW - 100,
        owner_uid="job-uid"):
    """A pod owned by owner_uid: job-uid for a trainer pod (job()'s), uid-1 for the validate pod."""
    status = {"phase": phase, "podIP": ip, "startTime": _iso(started)}
    if phase in ("Succeeded", "Failed"):
        term = {"exitCode": 0 if exit_code is None else exit_code, "message": message or "",
                "finishedAt": _iso(NOW - 5)}
        if reason:
            term["reason"] = reason
        status["containerStatuses"] = [{"state": {"terminated": term}}]
    return {"metadata": {"name": f"p-{index}", "annotations": {"batch.kubernetes.io/job-completion-index": index},
                         "ownerReferences": owner(owner_uid, "Job", "batch/v1") if owner_uid == "job-uid"
                         else owner(owner_uid)},
            "status": status}


def termination(reason, retryable=False, **fields):
    return json.dumps({"reason": reason, "retryable": retryable, "exitCode": 1, "message": fields.pop("message", reason),
                       **fields})


def owner(uid, kind="FineTuneJob", api_version="finetune.fto.dev/v1alpha1"):
    return [{"apiVersion": api_version, "kind": kind, "name": "x", "uid": uid, "controller": True}]


def job(name="bot-train-1", suspend=False, gpus=1, **status):
    """A trainer Job the FineTuneJob (uid-1) owns; its uid is job-uid."""
    conds = [{"type": t, "status": "True", "reason": r} for t, r in status.pop("conditions", [])]
    return {"metadata": {"name": name, "uid": "job-uid", "ownerReferences": owner("uid-1")}, "spec": {"suspend": suspend, "parallelism": 1, "template": {"spec": {
        "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}},
        "status": {**status, "conditions": conds}}


def owned_config_map(obj, settings=SETTINGS) -> dict:
    """<job>-config as the operator wrote it (immutable, owned), with the uid the apiserver gave it."""
    cm = trainer_config.config_map(obj, settings)
    cm["metadata"]["uid"] = "cm-uid"
    return cm


def snapshot(obj, settings=SETTINGS, config_map_exists=True, **children) -> Snapshot:
    """config_map_exists: the job's own, current ConfigMap is there (False: none)."""
    if "config_map" not in children:
        children["config_map"] = owned_config_map(obj, settings) if config_map_exists else None
    return Snapshot(obj, defaulted_spec(obj["spec"]), obj.get("status") or {}, settings, **children)


def _iso(t):
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


iso = _iso
__all__ = ["Capacity", "Preflight", "Verified", "ftj", "cond", "pod", "job", "snapshot", "termination", "NOW",
           "VALIDATED", "SETTINGS", "CAPPED", "iso", "owner", "owned_config_map"]
