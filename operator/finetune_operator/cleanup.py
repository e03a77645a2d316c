"""S3 clean-up when a FineTuneJob is deleted (spec.lifecycle.cleanupOnDelete).

Only a job that asks for clean-up carries the finalizer: every other job deletes at once, with or
without an operator running. What is deleted is decided here, purely; `delete_objects` does it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from finetune_api import manifest as manifest_contract

from . import storage

FINALIZER = "finetune.fto.dev/s3-cleanup"
KEEP, CHECKPOINTS, ALL = "Keep", "Checkpoints", "All"


def mode(spec: dict) -> str:
    return (spec.get("lifecycle") or {}).get("cleanupOnDelete") or KEEP


def finalizers_after(current: list[str], spec: dict) -> Optional[list[str]]:
    """The job's finalizers as the spec wants them, or None when they are already right."""
    want = mode(spec) != KEEP
    if want == (FINALIZER in current):
        return None
    return [*current, FINALIZER] if want else [f for f in current if f != FINALIZER]


@dataclasses.dataclass(frozen=True)
class Plan:
    bucket: str
    prefix: str                                 # every key deleted starts with it ("" only when refused)
    keep: tuple[str, ...] = ()                  # keys, or prefixes ending in "/", left in place
    refused: str = ""                           # why nothing is deleted
    kept_for: tuple[str, ...] = ()              # ModelVersions the kept adapter serves

    def deletes(self, key: str) -> bool:
        if self.refused or not key.startswith(self.prefix):
            return False
        return not any(key == k or (k.endswith("/") and key.startswith(k)) for k in self.keep)


def plan(spec: dict, status: dict, registered_from_job: list[str]) -> Plan:
    """What deleting this job removes. registered_from_job: ModelVersions whose adapter.fromJob is it."""
    output_uri = (spec.get("output") or {}).get("uri", "")
    bucket, key = storage.parse_uri(output_uri)
    base = key.strip("/")
    if not base:
        return Plan(bucket, "", refused=f"spec.output.uri {output_uri} names a whole bucket; clean-up deletes "
                                         "only under a job's own prefix, so nothing was deleted")
    base += "/"
    if mode(spec) == CHECKPOINTS:
        return Plan(bucket, base + "checkpoints/")
    if not registered_from_job:
        return Plan(bucket, base)
    keep = []
    result = status.get("result") or {}
    for uri, default, folder in ((result.get("adapterUri"), base + manifest_contract.ADAPTER_DIR + "/", True),
                                 (result.get("manifestUri"), base + manifest_contract.FILE_NAME, False)):
        kept = default
        if uri:
            b, k = storage.parse_uri(uri)
            if b == bucket:
                kept = k.rstrip("/") + "/" if folder else k
        keep.append(kept)
    return Plan(bucket, base, keep=tuple(keep), kept_for=tuple(sorted(registered_from_job)))


def describe(p: Plan, deleted: int) -> str:
    where = f"s3://{p.bucket}/{p.prefix}"
    text = f"deleted {deleted} object(s) under {where}"
    if p.kept_for:
        text += (f"; kept the adapter and manifest ({', '.join(f's3://{p.bucket}/{k}' for k in p.keep)}): "
                 f"ModelVersion {', '.join(p.kept_for)} was registered from this job")
    return text


def delete_objects(s3, p: Plan) -> int:
    """Deletes what the plan names, in batches of 1,000; returns how many objects went."""
    if p.refused:
        return 0
    deleted = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=p.bucket, Prefix=p.prefix):
        keys = [o["Key"] for o in page.get("Contents") or [] if p.deletes(o["Key"])]
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            result = s3.delete_objects(Bucket=p.bucket, Delete={"Objects": [{"Key": k} for k in batch],
                                                                 "Quiet": True})
            errors = result.get("Errors") or []
            if errors:
                first = errors[0]
                raise storage.StorageError("CleanupFailed", f"S3 refused to delete {len(errors)} object(s), e.g. "
                                                            f"{first.get('Key')}: {first.get('Code')} "
                                                            f"{first.get('Message', '')}".strip())
            deleted += len(batch)
    return deleted
