"""Watch events -> keys of the objects whose reconcile they concern."""
from __future__ import annotations

from typing import Optional

import kopf

from ..builders import names
from ..runtime.controller import GROUP, VERSION, Runtime

RUNTIME: Optional[Runtime] = None  # set by __main__ before kopf starts
MANAGED = {"app.kubernetes.io/managed-by": names.MANAGED_BY}


def _enqueue(plural: str, namespace: Optional[str], name: Optional[str]) -> None:
    if RUNTIME is not None and namespace and name:
        RUNTIME.enqueue(plural, namespace, name)


def owner_finetunejob(body) -> Optional[str]:
    """The FineTuneJob a child belongs to: its owner, or for a Job's pods the annotation we put on them."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "FineTuneJob" and ref.get("apiVersion", "").startswith(GROUP + "/"):
            return ref.get("name")
    return (body.get("metadata", {}).get("annotations") or {}).get(names.FINETUNEJOB_ANNOTATION)


@kopf.on.event(GROUP, VERSION, "finetunejobs")
def finetunejob_changed(body, type, **_):
    meta = body.get("metadata", {})
    if type == "DELETED":
        if RUNTIME is not None:
            RUNTIME.kinds["finetunejobs"].forget(meta.get("namespace"), meta.get("name"))
            # Capacity it held may let a waiting job start.
            RUNTIME.enqueue_namespace("finetunejobs", meta.get("namespace"))
            RUNTIME.forget_own_writes("finetunejobs", meta.get("namespace"), meta.get("name"))
        return
    if RUNTIME is not None and RUNTIME.is_own_status_write("finetunejobs", meta.get("namespace"), meta.get("name"),
                                                           meta.get("resourceVersion")):
        return  # the echo of our own status write: nothing the last pass did not already know
    _enqueue("finetunejobs", meta.get("namespace"), meta.get("name"))


@kopf.on.event(GROUP, VERSION, "modelversions")
def modelversion_changed(body, type, **_):
    meta = body.get("metadata", {})
    if type == "DELETED":
        if RUNTIME is not None and "modelversions" in RUNTIME.kinds:
            RUNTIME.kinds["modelversions"].forget(meta.get("namespace"), meta.get("name"))
        return
    _enqueue("modelversions", meta.get("namespace"), meta.get("name"))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def trainer_job_changed(body, **_):
    _enqueue("finetunejobs", body.get("metadata", {}).get("namespace"), owner_finetunejob(body))


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def trainer_pod_changed(body, **_):
    _enqueue("finetunejobs", body.get("metadata", {}).get("namespace"), owner_finetunejob(body))
