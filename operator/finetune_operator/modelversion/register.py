"""Pure: what registration needs and what it writes (status.adapter, status.lineage, servedName)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from finetune_api import manifest as manifest_contract

from .. import storage
from . import naming


@dataclasses.dataclass(frozen=True)
class JobState:
    """Where a fromJob version stands with its FineTuneJob."""
    state: str             # wait | failed | ready
    reason: str
    message: str
    manifest_uri: str = ""
    digest: str = ""       # the manifest's digest the job reported
    adapter_uri: str = ""


def from_job(job: Optional[dict], job_name: str) -> JobState:
    if job is None:
        return JobState("wait", "JobNotFound", f"FineTuneJob {job_name!r} does not exist in this namespace (yet)")
    status = job.get("status") or {}
    phase = status.get("phase", "Pending")
    if phase in ("Failed", "Cancelled"):
        return JobState("failed", "JobFailed", f"FineTuneJob {job_name!r} ended {phase}: "
                                               f"{status.get('reason', '')} {status.get('message', '')}".strip())
    if phase != "Succeeded":
        return JobState("wait", "WaitingForJob", f"FineTuneJob {job_name!r} is {phase}; registering when it succeeds")
    result = status.get("result") or {}
    if not result.get("manifestUri") or not result.get("adapterDigest"):
        return JobState("failed", "ManifestInvalid",
                        f"FineTuneJob {job_name!r} succeeded but its status.result has no manifestUri/adapterDigest")
    return JobState("ready", "", "", result["manifestUri"], result["adapterDigest"], result.get("adapterUri") or "")


def manifest_candidates(adapter_uri: str) -> list[str]:
    """Where an s3:// adapter's manifest may be: inside the prefix, or beside it (the trainer's layout:
    <out>/manifest.json next to <out>/adapter/)."""
    inside = storage.join(adapter_uri, manifest_contract.FILE_NAME)
    parent = adapter_uri.rstrip("/").rsplit("/", 1)[0]
    beside = storage.join(parent, manifest_contract.FILE_NAME)
    return [inside] if beside == inside or parent in ("s3:", "s3:/") else [inside, beside]


def adapter_prefix(manifest_uri: str) -> str:
    """The prefix the adapter files live under: adapter/ beside the manifest (every file a manifest
    lists is named adapter/<path>, which finetune_api.manifest.parse enforces)."""
    return manifest_contract.adapter_uri(manifest_uri) + "/"


@dataclasses.dataclass(frozen=True)
class Adapter:
    """The facts compatibility and serving need."""
    uri: str
    manifest_uri: str
    digest: str
    rank: Optional[int]
    target_modules: tuple
    base_digest: str
    base_name: str


def adapter_facts(manifest_uri: str, digest: str, manifest: dict, spec_base: Optional[dict]) -> Adapter:
    lora = manifest.get("lora") or {}
    base = manifest.get("baseModel") or {}
    spec_base = spec_base or {}
    return Adapter(uri=adapter_prefix(manifest_uri), manifest_uri=manifest_uri, digest=digest,
                   rank=lora.get("r"), target_modules=tuple(lora.get("targetModules") or ()),
                   base_digest=spec_base.get("digest") or base.get("digest") or "",
                   base_name=spec_base.get("name") or base.get("name") or "")


def registered_status(spec: dict, adapter: Adapter, manifest: dict, files: list, job_name: str = "") -> dict:
    """status.adapter, status.lineage and status.servedName of a verified adapter."""
    dataset = manifest.get("dataset") or {}
    lineage = {"jobName": job_name or (manifest.get("job") or {}).get("name", ""),
               "datasetUri": dataset.get("uri") or "", "datasetEtag": dataset.get("etag") or "",
               "baseModelDigest": (manifest.get("baseModel") or {}).get("digest") or "",
               "configHash": manifest.get("configHash") or "", "trainerImage": manifest.get("trainerImage") or "",
               "datasets": manifest_contract.dataset_sources(manifest) or None,
               "metrics": {k: v for k, v in (manifest.get("metrics") or {}).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    return {
        "adapter": {"uri": adapter.uri, "manifestUri": adapter.manifest_uri, "digest": adapter.digest, "rank": adapter.rank or 0,
                    "targetModules": list(adapter.target_modules),
                    "files": [{"name": f["name"], "sha256": f["sha256"], **({"size": int(f["size"])}
                                                                            if f.get("size") is not None else {})}
                              for f in files][:64]},
        "lineage": {k: v for k, v in lineage.items() if v not in ("", None)},
        "servedName": naming.served_name(spec["model"], spec["version"], adapter.digest),
    }


def adapter_from_status(status: dict, spec: dict) -> Optional[Adapter]:
    """The Adapter facts of an already-registered version (no S3 read on every pass)."""
    a = status.get("adapter") or {}
    if not a.get("digest"):
        return None
    lineage = status.get("lineage") or {}
    spec_base = spec.get("baseModel") or {}
    return Adapter(uri=a.get("uri", ""), manifest_uri=a.get("manifestUri", ""), digest=a["digest"],
                   rank=a.get("rank"), target_modules=tuple(a.get("targetModules") or ()),
                   base_digest=spec_base.get("digest") or lineage.get("baseModelDigest") or "",
                   base_name=spec_base.get("name", ""))
