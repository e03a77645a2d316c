"""The pass the runtime calls: observe, decide, act; and the deletion clean-up (finalize)."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Optional

from .. import cleanup, kube, storage
from ..builders import names
from ..builders.settings import OperatorSettings
from . import act, children, observe
from .decide import decide
from .snapshot import Snapshot, attempt_of

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
Event = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)
_namespace_locks: dict = {}
_namespace_locks_guard = threading.Lock()


def _namespace_lock(namespace: str) -> threading.Lock:
    with _namespace_locks_guard:
        return _namespace_locks.setdefault(namespace, threading.Lock())


def status_patch(old: dict, new: dict) -> dict:
    """The JSON merge patch from old to new status, top-level fields only (None deletes)."""
    patch = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


class Reconciler:
    def __init__(self, obj: dict, patch_status: dict, event: Event, settings: OperatorSettings, runtime=None):
        self.obj, self.out, self.event, self.settings, self.runtime = obj, patch_status, event, settings, runtime

    def reconcile(self) -> Optional[float]:
        snap = observe.observe(self.obj, self.settings)
        # The namespace lock spans the capacity decision and the Job's creation: a second worker
        # deciding meanwhile would not yet see this Job and could take the same last slot.
        needs = observe.needs_capacity(snap)
        with _namespace_lock(snap.meta["namespace"]) if needs else contextlib.nullcontext():
            if needs:
                snap = observe.with_capacity(snap)
            now = time.time()
            decision = decide(snap, now)
            act.perform(snap, decision.actions, self.runtime)
        self.out.update(status_patch(snap.status, decision.status))
        for e in decision.events:
            self.event(*e)
        act.record_metrics(snap, decision.status, now)
        return decision.requeue

    # --- deletion with spec.lifecycle.cleanupOnDelete ---------------------------------------------
    def finalize(self) -> Optional[float]:
        """The job is being deleted and carries our finalizer: stop its trainer pods, delete its S3
        output as asked, then let it go. A failed clean-up is retried; the job stays until it works
        or someone removes the finalizer (docs/operator.md says how)."""
        meta, spec = self.obj["metadata"], self.obj["spec"]
        finalizers = meta.get("finalizers") or []
        if cleanup.FINALIZER not in finalizers:
            return None
        if self._children_still_running():
            act.stop_trainer(meta["namespace"], meta["name"], attempt_of(self.obj.get("status") or {}), meta["uid"])
            return 2.0
        try:
            self._delete_output()
        except Exception as err:  # noqa: BLE001 - S3 or credentials: say so, keep the finalizer, retry
            message = err.message if isinstance(err, storage.StorageError) else str(err)
            self.event("Warning", "CleanupFailed",
                       f"could not delete the job's S3 output ({message}); retrying in 30 s. To delete the job "
                       f"without clean-up, remove the finalizer {cleanup.FINALIZER}")
            return 30.0
        snap = Snapshot(self.obj, spec, self.obj.get("status") or {}, self.settings)
        act.patch_finalizers(snap, [f for f in finalizers if f != cleanup.FINALIZER], self.runtime)
        return None

    def _children_still_running(self) -> bool:
        """True while the job's trainer or validation pods may still write to the output prefix
        (pods of its own Jobs, or its validate pod: another pod with the same labels does not count)."""
        ns, name, uid = self.obj["metadata"]["namespace"], self.obj["metadata"]["name"], self.obj["metadata"]["uid"]
        selector = "finetune.fto.dev/job=" + names.labels(name, "trainer")["finetune.fto.dev/job"]
        jobs = kube.raw(kube.batch().list_namespaced_job(ns, label_selector=selector, _preload_content=False))["items"]
        owners = [(uid, children.FTJ_OWNER)] + [(children.uid_of(j), children.JOB_OWNER) for j in jobs if children.owned(j, uid)]
        pods = kube.raw(kube.core().list_namespaced_pod(ns, label_selector=selector, _preload_content=False))["items"]
        return any((p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                   for p in pods if any(children.owned(p, o, kind) for o, kind in owners))

    def _delete_output(self) -> None:
        ns, name, spec = self.obj["metadata"]["namespace"], self.obj["metadata"]["name"], self.obj["spec"]
        versions = kube.raw(kube.custom().list_namespaced_custom_object(GROUP, VERSION, ns, "modelversions",
                                                                        _preload_content=False))["items"]
        registered = [v["metadata"]["name"] for v in versions
                      if (((v.get("spec") or {}).get("adapter") or {}).get("fromJob") or {}).get("name") == name]
        plan = cleanup.plan(spec, self.obj.get("status") or {}, registered)
        if plan.refused:
            self.event("Warning", "CleanupRefused", plan.refused)
            return
        s3 = storage.client_for(kube.core(), ns, spec.get("credentials"))
        self.event("Normal", "OutputDeleted", cleanup.describe(plan, cleanup.delete_objects(s3, plan)))


__all__ = ["Reconciler"]
