"""Performs a Decision's actions, each idempotently: create by fixed name (AlreadyExists: done),
delete (NotFound: done), patch. The status itself is written by the runtime, once, guarded by
the resourceVersion the pass read."""
from __future__ import annotations

from .. import kube, metrics, status as st
from ..builders import names, trainer_job
from . import children, draft
from .snapshot import Snapshot

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


def _ignoring(statuses, call) -> None:
    """Runs call, treating the API errors with these statuses (an int or a tuple) as done."""
    from kubernetes.client.exceptions import ApiException
    try:
        call()
    except ApiException as err:
        if err.status not in (statuses if isinstance(statuses, tuple) else (statuses,)):
            raise


def create(body: dict) -> None:
    ns, kind = body["metadata"]["namespace"], body["kind"]
    core, batch, custom = kube.core(), kube.batch(), kube.custom()
    call = {"ConfigMap": lambda: core.create_namespaced_config_map(ns, body, _preload_content=False),
            "Pod": lambda: core.create_namespaced_pod(ns, body, _preload_content=False),
            "Service": lambda: core.create_namespaced_service(ns, body, _preload_content=False),
            "Job": lambda: batch.create_namespaced_job(ns, body, _preload_content=False),
            "ModelVersion": lambda: custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", body,
                                                                          _preload_content=False)}[kind]
    _ignoring(409, call)


def _delete_if_owned(read, delete, name: str, owner_uid: str, **options) -> None:
    """Deletes the child `name` only if it is the owner's (children.owned), with its uid as the
    delete's precondition: an object put in its place after the read is refused (409), not deleted."""
    obj = kube.read_or_none(read, name)
    if obj is None or not children.owned(obj, owner_uid):
        return
    body = {"preconditions": {"uid": children.uid_of(obj)}, **options}
    _ignoring((404, 409), lambda: delete(name, body=body))


def stop_trainer(ns: str, name: str, attempt: int, uid: str) -> None:
    """Deletes the attempt's Job (its pods get SIGTERM and checkpoint) and the validate pod, if they are the job's."""
    batch, core = kube.batch(), kube.core()
    _delete_if_owned(lambda n, **k: batch.read_namespaced_job(n, ns, **k),
                     lambda n, **k: batch.delete_namespaced_job(n, ns, **k), trainer_job.job_name(name, attempt), uid,
                     propagationPolicy="Background")
    _delete_if_owned(lambda n, **k: core.read_namespaced_pod(n, ns, **k),
                     lambda n, **k: core.delete_namespaced_pod(n, ns, **k), names.child_name(name, "validate"), uid)


def delete_children(ns: str, name: str, uid: str) -> None:
    """TTL: the job's own Jobs, Services, validate pod and ConfigMap; objects of the same names or
    labels that are not the job's are left alone."""
    batch, core = kube.batch(), kube.core()
    selector = f"finetune.fto.dev/job={name[:names.MAX_NAME]},app.kubernetes.io/managed-by={names.MANAGED_BY}"
    for job in kube.raw(batch.list_namespaced_job(ns, label_selector=selector, _preload_content=False))["items"]:
        if children.owned(job, uid):
            _ignoring((404, 409), lambda: batch.delete_namespaced_job(job["metadata"]["name"], ns, body={
                "propagationPolicy": "Background", "preconditions": {"uid": children.uid_of(job)}}))
    for svc in kube.raw(core.list_namespaced_service(ns, label_selector=selector, _preload_content=False))["items"]:
        if children.owned(svc, uid):
            _ignoring((404, 409), lambda: core.delete_namespaced_service(svc["metadata"]["name"], ns, body={
                "preconditions": {"uid": children.uid_of(svc)}}))
    _delete_if_owned(lambda n, **k: core.read_namespaced_pod(n, ns, **k),
                     lambda n, **k: core.delete_namespaced_pod(n, ns, **k), names.child_name(name, "validate"), uid)
    _delete_if_owned(lambda n, **k: core.read_namespaced_config_map(n, ns, **k),
                     lambda n, **k: core.delete_namespaced_config_map(n, ns, **k), names.child_name(name, "config"),
                     uid)


def patch_finalizers(s: Snapshot, finalizers: list, runtime) -> None:
    if runtime is not None:
        runtime.fence()
    # The resourceVersion makes it conditional: a finalizer list read stale is refused (409).
    kube.custom().patch_namespaced_custom_object(
        GROUP, VERSION, s.meta["namespace"], "finetunejobs", s.meta["name"],
        {"metadata": {"finalizers": finalizers, "resourceVersion": s.meta["resourceVersion"]}})


def perform(s: Snapshot, actions, runtime) -> None:
    ns, name = s.meta["namespace"], s.meta["name"]
    for a in actions:
        if a.kind == draft.CREATE:
            create(a.body)
            if a.body["kind"] == "ModelVersion" and runtime is not None:
                runtime.enqueue("modelversions", ns, a.body["metadata"]["name"], delay=1.0)
        elif a.kind == draft.STOP_TRAINER:
            stop_trainer(ns, name, s.attempt, s.meta["uid"])
        elif a.kind == draft.DELETE_CHILDREN:
            delete_children(ns, name, s.meta["uid"])
        elif a.kind == draft.DELETE_CONFIG_MAP:  # observe saw it ours; the uid guards the time since
            _ignoring((404, 409), lambda: kube.core().delete_namespaced_config_map(
                a.name, ns, body={"preconditions": {"uid": a.value}}))
        elif a.kind == draft.SET_JOB_SUSPEND:  # the uid: refused if the name now holds another Job
            kube.batch().patch_namespaced_job(a.name, ns, {"metadata": {"uid": children.uid_of(s.job or {})},
                                                           "spec": {"suspend": a.value}})
        elif a.kind == draft.PATCH_FINALIZERS:
            patch_finalizers(s, a.value, runtime)
        elif a.kind == draft.WAKE_NAMESPACE and runtime is not None:
            runtime.enqueue_namespace("finetunejobs", ns)


def record_metrics(s: Snapshot, new: dict, now: float) -> None:
    """The job's metrics, from how its status changed in this pass."""
    old, ns = s.status, s.meta["namespace"]
    metrics.JOBS.set((ns, s.meta["name"]), namespace=ns, phase=new.get("phase") or "Pending")
    if new.get("phase") == "Failed" and old.get("phase") != "Failed":
        metrics.JOB_FAILURES.labels(ns, new.get("reason") or "").inc()
    if int(new.get("attempts") or 1) > int(old.get("attempts") or 1):
        metrics.JOB_RETRIES.labels(ns).inc()
    gained = float(new.get("gpuSeconds") or 0) - float(old.get("gpuSeconds") or 0)
    if gained > 0:
        metrics.GPU_SECONDS.labels(ns).inc(gained)
    created = st.parse_time(s.meta.get("creationTimestamp"))
    if new.get("startTime") and not old.get("startTime") and created:
        metrics.JOB_START_LATENCY.observe(max(0.0, now - created))
