"""Reads the world into one Snapshot: the FineTuneJob and, by their fixed names, the children
the decision needs (nothing is read that this pass cannot use)."""
from __future__ import annotations

import dataclasses
import json
import logging
import urllib.request
from typing import Optional

from finetune_api import progress

from .. import credentials, deadline, kube, quota, s3access, status as st, storage
from ..builders import names, trainer_job
from . import children
from .snapshot import Capacity, Preflight, Snapshot, Verified, attempt_of, caps_enabled, defaulted_spec
from .train import lead_pod

log = logging.getLogger("finetune-operator")
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


def _api_exception():
    from kubernetes.client.exceptions import ApiException
    return ApiException


def observe(obj: dict, settings) -> Snapshot:
    status = obj.get("status") or {}
    spec = defaulted_spec(obj["spec"])
    base = Snapshot(obj, spec, status, settings)
    if status.get("phase") in st.TERMINAL or spec["lifecycle"]["cancel"]:
        return base
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    core, uid = kube.core(), obj["metadata"]["uid"]
    conflicts: list = []
    fields: dict = {}
    if st.condition_status(status.get("conditions"), st.VALIDATED) != "True":
        pod = _read_owned(lambda n, **k: core.read_namespaced_pod(n, ns, **k), "Pod",
                          names.child_name(name, "validate"), uid, conflicts)
        fields["validate_pod"] = pod
        if pod is None:
            fields.update(preflight=_preflight(core, ns, obj["spec"]), config_map=_config_map(core, obj, conflicts))
        if st.pod_outcome(pod).state != "succeeded":
            return dataclasses.replace(base, conflicts=tuple(conflicts), **fields)
    fields.update(_attempt(core, obj, attempt_of(status), settings, conflicts))
    return dataclasses.replace(base, conflicts=tuple(conflicts), **fields)


def _read_owned(read, kind: str, name: str, owner_uid: str, conflicts: list) -> Optional[dict]:
    """The child by its fixed name; None when absent, or when it is not the job's: anyone who may
    create objects in the namespace can take the name first, so that one is only noted as a conflict."""
    found = kube.read_or_none(read, name)
    if found is None or children.owned(found, owner_uid):
        return found
    conflicts.append(children.Conflict(kind, name))
    return None


def _attempt(core, obj: dict, attempt: int, settings, conflicts: list) -> dict:
    """The attempt's Job and pods (the Job's own: labels can be copied), and what they lead to:
    progress, the verified result."""
    ns, name, uid = obj["metadata"]["namespace"], obj["metadata"]["name"], obj["metadata"]["uid"]
    batch, job_name = kube.batch(), trainer_job.job_name(name, attempt)
    job = _read_owned(lambda n, **k: batch.read_namespaced_job(n, ns, **k), "Job", job_name, uid, conflicts)
    if job is None:
        if (obj["spec"].get("resources") or {}).get("nodes", 1) > 1:  # the rendezvous Service
            _read_owned(lambda n, **k: core.read_namespaced_service(n, ns, **k), "Service", job_name, uid, conflicts)
        return {"job": None, "config_map": _config_map(core, obj, conflicts)}
    pods = tuple(p for p in kube.raw(core.list_namespaced_pod(
        ns, label_selector=f"batch.kubernetes.io/job-name={job['metadata']['name']}",
        _preload_content=False))["items"] if children.owned(p, children.uid_of(job), children.JOB_OWNER))
    out = {"job": job, "pods": pods}
    state, lead = st.job_state(job, list(pods)), lead_pod(pods)
    if state == "running" and lead and (lead.get("status") or {}).get("podIP"):
        out["progress"] = _progress(lead["status"]["podIP"], settings.metrics_port)
    if state == "succeeded":
        out["verified"] = _verify(core, ns, obj["spec"].get("credentials"), st.pod_outcome(lead))
    return out


def needs_capacity(s: Snapshot) -> bool:
    """Whether this pass may start or resume a trainer under the namespace caps."""
    if not caps_enabled(s.settings) or s.status.get("phase") in st.TERMINAL or s.life["cancel"]:
        return False
    validated = st.condition_status(s.conditions, st.VALIDATED) == "True" or \
        st.pod_outcome(s.validate_pod).state == "succeeded"
    return validated and (s.job is None or st.job_state(s.job) == "suspended")


def with_capacity(s: Snapshot) -> Snapshot:
    """Adds the namespace's capacity; read holding the namespace lock, up to the Job's creation."""
    ns, me = s.meta["namespace"], s.meta["name"]
    jobs = kube.raw(kube.batch().list_namespaced_job(
        ns, label_selector=f"app.kubernetes.io/managed-by={names.MANAGED_BY},app.kubernetes.io/component=trainer",
        _preload_content=False))["items"]
    holding = [j for j in jobs if quota.job_holds_capacity(j)]
    started = {j["metadata"]["name"] for j in jobs}
    waiting = []
    for other in kube.raw(kube.custom().list_namespaced_custom_object(
            GROUP, VERSION, ns, "finetunejobs", _preload_content=False))["items"]:
        ostatus, olife = other.get("status") or {}, other["spec"].get("lifecycle") or {}
        if ostatus.get("phase") in st.TERMINAL or olife.get("suspend") or olife.get("cancel"):
            continue
        if st.condition_status(ostatus.get("conditions"), st.VALIDATED) != "True" and other["metadata"]["name"] != me:
            continue  # a job still in validation holds no place: its dataset may turn out invalid
        if trainer_job.job_name(other["metadata"]["name"], attempt_of(ostatus)) in started:
            continue
        waiting.append(quota.demand_of(other))
    return dataclasses.replace(s, capacity=Capacity(len(holding), sum(quota.job_gpus(j) for j in holding),
                                                    tuple(waiting)))


def _config_map(core, obj: dict, conflicts: list) -> Optional[dict]:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    return _read_owned(lambda n, **k: core.read_namespaced_config_map(n, ns, **k), "ConfigMap",
                       names.child_name(name, "config"), obj["metadata"]["uid"], conflicts)


def _preflight(core, ns: str, spec: dict) -> Preflight:
    creds = spec.get("credentials")
    try:  # opted-in Secret only (credentials.read); no credentials only where the admin allowed it
        if creds:
            storage.credentials_from_secret(credentials.read(core, ns, creds["secretRef"]["name"],
                                                             "spec.credentials.secretRef"), creds)
        elif (refused := s3access.identity_refusal(s3access.current(), ns)) is not None:
            raise refused
    except storage.StorageError as err:
        return Preflight(credentials_problem=(err.reason, err.message))
    try:
        nodes = kube.raw(core.list_node(_preload_content=False))["items"]
    except _api_exception() as err:
        if err.status != 403:
            raise
        # A namespaced install (a Role, no ClusterRole) cannot see nodes: the scheduler judges alone.
        log.info("cannot list nodes (%s); skipping the GPU shape check", err.reason)
        return Preflight()
    return Preflight(nodes=tuple(nodes))


PROGRESS_SECONDS, PROGRESS_MAX_BYTES = 2.0, 256 * 1024  # a pod of the tenant's namespace answers


def _progress(ip: str, port: int) -> Optional[dict]:
    try:
        with deadline.within(PROGRESS_SECONDS, "the trainer's /progress"), \
                urllib.request.urlopen(f"http://{ip}:{port}{progress.PATH}", timeout=1) as resp:
            body = resp.read(PROGRESS_MAX_BYTES + 1)
        if len(body) > PROGRESS_MAX_BYTES:
            return None
        doc = json.loads(body)
    except (OSError, ValueError):
        return None  # not serving yet; the next pass tries again
    return doc if isinstance(doc, dict) else None


def _verify(core, ns: str, credentials: Optional[dict], outcome: st.PodOutcome) -> Optional[Verified]:
    result = outcome.result or {}
    if not result.get("manifestUri"):
        return None
    try:
        s3 = storage.client_for(core, ns, credentials)
        v = storage.verify_manifest(s3, result["manifestUri"], result.get("adapterDigest"))
    except storage.StorageError as err:
        return Verified(error=(err.reason, err.message))
    return Verified(adapter_uri=v.adapter_uri, digest=v.digest, manifest=v.manifest, files=len(v.files))
