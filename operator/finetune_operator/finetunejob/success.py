"""Pure: a finished trainer's result -> status.result, lineage, the Succeeded condition and the
ModelVersion spec.output.registerModelVersion asks for."""
from __future__ import annotations

from typing import Optional

from finetune_api import manifest as manifestmod

from .. import status as st
from ..builders import names
from .draft import CREATE, Draft, after_finish, fail

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


def succeed(d: Draft, outcome: st.PodOutcome) -> Optional[float]:
    s, result = d.s, outcome.result or {}
    if not result.get("manifestUri"):
        return fail(d, "ResultMissing", "the trainer exited 0 without reporting its result "
                                        "(no manifestUri in its termination message)")
    v = s.verified
    if v is None:  # observe reads the manifest once the Job is Complete; it was not there yet
        return 1.0
    if v.error:
        if v.error[0] == "S3Unavailable":
            d.condition(st.RUNNING, True, "VerifyingAdapter", f"retrying: {v.error[1]}")
            return 10.0
        return fail(d, v.error[0], f"the trained adapter failed verification: {v.error[1]}")
    manifest = v.manifest or {}
    steps = manifest.get("steps", result.get("steps"))
    d.set(result=_result(result, v, manifest, steps), lineage=_lineage(s, manifest), completionTime=d.stamp)
    if d.status.get("progress"):
        progress = dict(d.status["progress"], step=steps, percent=100)
        progress["display"] = f"{steps}/{progress.get('totalSteps', steps)}"
        d.set(progress=progress)
    registered = _register_model_version(d)
    d.condition(st.RUNNING, False, st.REASON_TRAINED, "training finished")
    d.condition(st.SUCCEEDED, True, st.REASON_TRAINED,
                f"adapter written to {result.get('adapterUri')}; {v.files} files verified" +
                (f"; ModelVersion {registered}" if registered else ""))
    d.wake_waiting()
    return after_finish(d)


def _result(result: dict, v, manifest: dict, steps) -> dict:
    metrics = {k: x for k, x in (manifest.get("metrics") or result.get("metrics") or {}).items()
               if isinstance(x, (int, float))}
    return {"adapterUri": result.get("adapterUri") or v.adapter_uri, "manifestUri": result["manifestUri"],
            "adapterDigest": v.digest, "metrics": metrics, "steps": steps,
            "tokens": manifest.get("tokens"), "wallSeconds": manifest.get("wallSeconds")}


def _lineage(s, manifest: dict) -> dict:
    lineage = {"datasetUri": (manifest.get("dataset") or {}).get("uri") or s.spec["dataset"]["uri"],
               "datasetEtag": (manifest.get("dataset") or {}).get("etag"),
               "baseModelDigest": (manifest.get("baseModel") or {}).get("digest"),
               "configHash": manifest.get("configHash"),
               "trainerImage": manifest.get("trainerImage") or s.settings.trainer_image,
               "datasets": manifestmod.dataset_sources(manifest)}
    return {k: x for k, x in lineage.items() if x}


def model_version_body(s) -> Optional[dict]:
    wanted = (s.obj["spec"].get("output") or {}).get("registerModelVersion")  # as written: no defaults added
    if not wanted:
        return None
    name, version = s.meta["name"], wanted.get("version") or s.meta["name"]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
            "metadata": {"name": names.child_name(wanted["model"], version), "namespace": s.meta["namespace"],
                         "labels": {"finetune.fto.dev/model": wanted["model"],
                                    "finetune.fto.dev/job": name[:names.MAX_NAME]}},
            # Not owned by the job: deleting a finished job must not delete a served model's record.
            "spec": {"model": wanted["model"], "version": version, "adapter": {"fromJob": {"name": name}},
                     "baseModel": {"name": s.spec["baseModel"]["name"]},
                     "stage": wanted.get("stage", "candidate")}}
    for key in ("servingTarget", "gates"):
        if wanted.get(key):
            body["spec"][key] = wanted[key]
    if s.obj["spec"].get("credentials"):
        body["spec"]["credentials"] = s.obj["spec"]["credentials"]
    return body


def _register_model_version(d: Draft) -> Optional[str]:
    body = model_version_body(d.s)
    if body is None:
        return None
    d.act(CREATE, body=body)  # act enqueues it: it waits for this job's Succeeded status
    d.set(modelVersion=body["metadata"]["name"])
    return body["metadata"]["name"]
