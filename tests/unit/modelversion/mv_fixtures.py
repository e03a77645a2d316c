"""Builders for ModelVersion snapshots: objects, pod views, records (no cluster)."""
from __future__ import annotations

import copy
import dataclasses

from finetune_operator.modelversion import naming, observe, record
from finetune_operator.modelversion.pods import Pod, PodView
from finetune_operator.modelversion.snapshot import Analysis, Outcome, Registration, Snapshot

NS, MODEL = "team", "bot"
BASE_DIGEST = "sha256:" + "b" * 64
BASE_NAME = "smollm2"
NOW = 1_800_000_000.0
AT = "2027-01-15T08:00:00Z"   # iso(NOW)


def digest(version: str) -> str:
    return "sha256:" + (version.encode().hex() * 64)[:64]


def served(version: str) -> str:
    return naming.served_name(MODEL, version, digest(version))


def registered_status(version: str, **extra) -> dict:
    return {"observedGeneration": 1, "phase": "Registered", "reason": "Candidate",
            "servedName": served(version),
            "adapter": {"uri": f"s3://b/{version}/adapter/", "manifestUri": f"s3://b/{version}/manifest.json",
                        "digest": digest(version), "rank": 4, "targetModules": ["q_proj", "v_proj"]},
            "lineage": {"baseModelDigest": BASE_DIGEST, "metrics": {"eval_loss": 1.0}},
            "conditions": [{"type": "Registered", "status": "True", "reason": "Verified", "message": "ok",
                            "observedGeneration": 1, "lastTransitionTime": "2027-01-01T00:00:00Z"}], **extra}


def mv(version: str, stage: str = "production", generation: int = 1, status: dict | None = None,
       created: str = "2027-01-01T00:00:00Z", **spec) -> dict:
    obj = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "ModelVersion",
           "metadata": {"name": f"{MODEL}-{version}", "namespace": NS, "generation": generation,
                        "creationTimestamp": created},
           "spec": {"model": MODEL, "version": version,
                    "adapter": {"uri": f"s3://b/{version}/adapter/", "digest": digest(version)},
                    "baseModel": {"name": BASE_NAME, "digest": BASE_DIGEST}, "stage": stage,
                    "servingTarget": {"selector": {"matchLabels": {"app": "serve"}}}, **spec},
           "status": registered_status(version) if status is None else status}
    return observe.with_defaults(obj)


def pod(name: str, *loaded: str, alias: dict | None = None, error: str = "", rank: int = 8,
        base_digest: str = BASE_DIGEST, base_name: str = BASE_NAME) -> PodView:
    if error:
        return PodView(Pod(name, f"127.0.0.{len(name)}"), error=error)
    aliases = ((MODEL, tuple(sorted(alias.items()))),) if alias else ()
    return PodView(Pod(name, "127.0.1." + name[-1]), loaded=tuple(sorted(loaded)), aliases=aliases,
                   max_lora_rank=rank, base_digest=base_digest, base_name=base_name)


def on(version_or_name: str) -> dict:
    name = served(version_or_name) if "--" not in version_or_name and version_or_name != BASE_NAME \
        else version_or_name
    return {name: 100}


def rec(production: str = "", previous: str = "", promoted_at: str = "2027-01-10T00:00:00Z", promoting=None,
        decisions=None, history=None, on_base: str = "") -> record.Record:
    r = record.Record(resource_version="7")
    if production:
        r.production, r.production_version, r.served_name = f"{MODEL}-{production}", production, served(production)
        r.promoted_at = promoted_at
    elif on_base:
        r.served_name, r.promoted_at = on_base, promoted_at
    if previous:
        r.previous, r.previous_version, r.previous_served_name = f"{MODEL}-{previous}", previous, served(previous)
    r.promoting = copy.deepcopy(promoting or {})
    r.decisions = copy.deepcopy(decisions or {})
    r.history = list(history or [])
    return r


def lock(version: str, previous: str = "", generation: int = 1, **extra) -> dict:
    return {"name": f"{MODEL}-{version}", "version": version, "generation": generation, "since": AT,
            "previous": f"{MODEL}-{previous}" if previous else "", "previousVersion": previous,
            "previousServedName": served(previous) if previous else "", "manual": False, **extra}


def won(*versions: str, generation: int = 1, **extra) -> dict:
    return {f"{MODEL}-{v}": {"generation": generation, "result": "won", "at": AT, **extra} for v in versions}


def snap(obj: dict, views=(), record_=None, others=None, analysis: Analysis | None = None,
         registration: Registration | None = None, outcome: Outcome | None = None) -> Snapshot:
    return Snapshot(obj, registration or Registration("registered"),
                    record=record_ if record_ is not None else rec(), views=tuple(views),
                    others=tuple(others) if others is not None else None, analysis=analysis, outcome=outcome)


@dataclasses.dataclass(frozen=True)
class Verified:
    """The shape of storage.VerifiedManifest decide reads."""
    uri: str
    digest: str
    manifest: dict
    files: list
