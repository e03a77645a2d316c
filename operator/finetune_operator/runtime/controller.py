"""The worker side of the runtime: keys in, reconcilers run, status and events out."""
from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from typing import Callable, Iterable, Optional

from .. import deadline, kube, metrics
from . import events as k8s_events
from .workqueue import WorkQueue

log = logging.getLogger("finetune-operator")
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


class LostLeadership(Exception):
    """Raised inside a pass when this replica is no longer the leader: it must stop acting
    (another replica may already be reconciling the same object)."""


@dataclasses.dataclass(frozen=True)
class Kind:
    """A custom resource this operator reconciles.

    `reconciler(obj, status_patch, event, settings, runtime)` has `.reconcile() -> Optional[float]`
    (and optionally `.finalize() -> Optional[float]`, called instead once the object is being deleted):
    it fills status_patch (a JSON merge patch of .status; None deletes a field), calls
    event(type, reason, message), and returns seconds until it wants to run again (None: only
    when something changes).
    """
    plural: str
    reconciler: Callable
    forget: Callable[[str, str], None] = lambda namespace, name: None
    # True: the watch event of this runtime's own status write does not enqueue the object
    # again. Only for reconcilers whose pass reaches its fixed point in one go (or asks for a
    # requeue): the event would bring no news.
    ignore_own_status_writes: bool = False


RECONCILE_ERROR = "ReconcileError"  # condition type and Event reason: a pass failed unexpectedly


def error_condition(conditions: list, ok_now: bool, message: str, generation: int, now: str) -> Optional[list]:
    """Pure: conditions with ReconcileError set (True: the last pass failed; False: a later one
    succeeded), or None when nothing changes (no such condition and nothing failed)."""
    old = next((c for c in conditions or [] if c.get("type") == RECONCILE_ERROR), None)
    if ok_now and (old is None or old.get("status") == "False"):
        return None
    status = "False" if ok_now else "True"
    new = {"type": RECONCILE_ERROR, "status": status, "reason": "Reconciled" if ok_now else "UnexpectedError",
           "message": "the last pass succeeded" if ok_now else message[:1024], "observedGeneration": generation,
           "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status else now}
    if old == new:
        return None
    return [new if c.get("type") == RECONCILE_ERROR else c for c in conditions] if old else [*(conditions or []), new]


def conflict_backoff(conflicts: int, rand: float) -> float:
    """Pure: seconds before the next try after the n-th 409 in a row on one key: 0.1 s doubling up to
    10 s, times a jitter in [0.5, 1.5) (rand in [0, 1)), so racing writers drift apart."""
    return min(10.0, 0.1 * 2 ** max(0, conflicts - 1)) * (0.5 + rand)


def default_namespace_limit(workers: int) -> int:
    """How many workers one namespace may hold at once: half of them (at least one)."""
    return max(1, workers // 2)


class Runtime:
    def __init__(self, settings, kinds: Iterable[Kind], elector, namespaces: Optional[list] = None,
                 workers: int = 8, resync_seconds: float = 60.0, namespace_limit: Optional[int] = None):
        self.settings, self.elector = settings, elector
        self.kinds = {k.plural: k for k in kinds}
        self.namespaces = namespaces or None
        # Fair across namespaces: round-robin, and one namespace (its slow passes too) holds at
        # most namespace_limit workers at once (workqueue.py).
        self.queue = WorkQueue(shard_limit=namespace_limit or default_namespace_limit(workers))
        self.workers, self.resync_seconds = workers, resync_seconds
        self._failures: dict = {}
        self._conflicts: dict = {}
        self._own_writes: dict = {}  # key -> resourceVersion of this runtime's last status write
        self._own_writes_lock = threading.Lock()
        self._threads: list = []
        self._stopping = threading.Event()

    def fence(self) -> None:
        """Called before side effects outside the apiserver (agent calls), which no resourceVersion
        guards: a replica that lost its Lease mid-pass stops there."""
        if not self.elector.is_leader:
            raise LostLeadership("this replica no longer holds the Lease")

    # --- feeding the queue -----------------------------------------------------------------------
    def enqueue(self, plural: str, namespace: str, name: str, delay: float = 0.0) -> None:
        if plural in self.kinds and self._watched(namespace):
            self.queue.add((plural, namespace, name), delay)

    def enqueue_namespace(self, plural: str, namespace: str) -> None:
        """Every object of a kind in a namespace (e.g. waiting jobs when capacity frees up)."""
        for obj in self._list(plural, namespace):
            self.enqueue(plural, namespace, obj["metadata"]["name"])

    def resync(self) -> None:
        for plural in self.kinds:
            for ns in self.namespaces or [None]:
                for obj in self._list(plural, ns):
                    self.enqueue(plural, obj["metadata"]["namespace"], obj["metadata"]["name"])

    def is_own_status_write(self, plural: str, namespace: str, name: str, resource_version: str) -> bool:
        """Whether a watch event shows exactly the object our last status write produced (and the
        kind asked for such events to be ignored)."""
        kind = self.kinds.get(plural)
        if kind is None or not kind.ignore_own_status_writes:
            return False
        with self._own_writes_lock:
            return self._own_writes.get((plural, namespace, name)) == resource_version

    def forget_own_writes(self, plural: str, namespace: str, name: str) -> None:
        with self._own_writes_lock:
            self._own_writes.pop((plural, namespace, name), None)

    def _watched(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    @staticmethod
    def _list(plural: str, namespace: Optional[str]) -> list:
        custom = kube.custom()
        if namespace:
            resp = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, _preload_content=False)
        else:
            resp = custom.list_cluster_custom_object(GROUP, VERSION, plural, _preload_content=False)
        return kube.raw(resp)["items"]

    # --- running -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn(self.elector.run, "leader-election")
        for i in range(self.workers):
            self._spawn(self._work, f"worker-{i}")
        self._spawn(self._resync_loop, "resync")

    def stop(self) -> None:
        self._stopping.set()
        self.queue.close()
        self.elector.stop()

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _resync_loop(self) -> None:
        was_leader = False
        next_resync = 0.0
        while not self._stopping.is_set():
            leader = self.elector.is_leader
            # A new leader looks at everything at once: the previous one may have died mid-way.
            if leader and (not was_leader or time.monotonic() >= next_resync):
                try:
                    self.resync()
                    next_resync = time.monotonic() + self.resync_seconds
                except Exception as err:  # noqa: BLE001
                    log.warning("resync failed: %s", err)
                    next_resync = time.monotonic() + 2
            was_leader = leader
            self._stopping.wait(0.5)

    def _work(self) -> None:
        while not self._stopping.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                if self.elector.is_leader:
                    deadline.reset()  # nothing a failed pass left open bounds this one
                    self._process(key)
            finally:
                self.queue.done(key)

    def _process(self, key) -> None:
        plural, namespace, name = key
        kind = self.kinds[plural]
        started = time.monotonic()
        metrics.RECONCILES.labels(plural).inc()
        try:
            requeue = self.reconcile_once(kind, namespace, name)
            self._failures.pop(key, None)
            self._conflicts.pop(key, None)
        except LostLeadership:
            log.info("stopped reconciling %s %s/%s: lost the Lease mid-pass", plural, namespace, name)
            requeue = None
        except Exception as err:  # noqa: BLE001 - report, back off, try again
            requeue = self._failed(key, err)
        finally:
            metrics.RECONCILE_SECONDS.labels(plural).observe(time.monotonic() - started)
        if requeue is not None:
            self.queue.add(key, requeue)

    def _failed(self, key, err: Exception) -> float:
        """Back-off after a failed pass: a conflict retries soon, with jittered exponential backoff
        per object (conflict_backoff); anything else waits 1 s, 2 s, 4 s ... 60 s per object and is
        reported on the object (Warning Event and the ReconcileError condition), not only in the log."""
        plural, namespace, name = key
        from kubernetes.client.exceptions import ApiException
        if isinstance(err, ApiException) and err.status == 409:
            conflicts = self._conflicts[key] = self._conflicts.get(key, 0) + 1
            requeue = conflict_backoff(conflicts, random.random())
            log.debug("conflict on %s/%s %s; retrying in %.2fs", namespace, name, plural, requeue)
            return requeue  # a write raced with a change: re-read and decide again
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        requeue = min(60.0, 0.5 * 2 ** min(failures, 7))
        log.exception("reconciling %s %s/%s failed (retry in %.1fs)", plural, namespace, name, requeue)
        metrics.RECONCILE_ERRORS.labels(plural).inc()
        try:
            self._report_error(plural, namespace, name, f"{type(err).__name__}: {err}; retrying in {requeue:.0f}s")
        except Exception as report_err:  # noqa: BLE001 - the apiserver itself may be what failed
            log.warning("could not report the error on %s/%s: %s", namespace, name, report_err)
        return requeue

    def _report_error(self, plural: str, namespace: str, name: str, message: str) -> None:
        custom = kube.custom()
        obj = kube.read_or_none(
            lambda n, **k: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, n, **k), name)
        if obj is None:
            return
        k8s_events.post(kube.core(), obj, "Warning", RECONCILE_ERROR, message)
        conditions = error_condition((obj.get("status") or {}).get("conditions") or [], False, message,
                                     int(obj["metadata"].get("generation") or 1), _now())
        if conditions is not None:
            self.fence()
            self._write_status(plural, obj, {"conditions": conditions})

    def _write_status(self, plural: str, obj: dict, patch: dict) -> None:
        meta = obj["metadata"]
        # The resourceVersion makes the write conditional: a status decided from a stale read is
        # refused (409) and the pass runs again on the fresh object, so status never goes back.
        written = kube.raw(kube.custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], plural, meta["name"],
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}, _preload_content=False))
        metrics.STATUS_WRITES.labels(plural).inc()
        with self._own_writes_lock:
            self._own_writes[(plural, meta["namespace"], meta["name"])] = written["metadata"]["resourceVersion"]

    def reconcile_once(self, kind: Kind, namespace: str, name: str) -> Optional[float]:
        custom, core = kube.custom(), kube.core()
        obj = kube.read_or_none(
            lambda n, **k: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, n, **k), name)
        deleting = bool(obj and obj["metadata"].get("deletionTimestamp"))
        if obj is None or (deleting and not hasattr(kind.reconciler, "finalize")):
            kind.forget(namespace, name)
            self.forget_own_writes(kind.plural, namespace, name)
            return None
        patch: dict = {}
        emitted: list = []
        reconciler = kind.reconciler(obj, patch, lambda *e: emitted.append(e), self.settings, self)
        # A deleting object is only finalized (its own finalizer, if it has one), never reconciled.
        requeue = reconciler.finalize() if deleting else reconciler.reconcile()
        if deleting and requeue is None:
            kind.forget(namespace, name)
        self.fence()  # a status decided by a replica that lost the Lease is not written
        _clear_error(obj, patch)
        if patch:
            self._write_status(kind.plural, obj, patch)
        for event_type, reason, message in emitted:
            k8s_events.post(core, obj, event_type, reason, message)
        return requeue


def _clear_error(obj: dict, patch: dict) -> None:
    """A good pass clears a ReconcileError condition a failed one left (on top of the pass's own
    conditions, if it wrote any)."""
    base = patch.get("conditions") if patch.get("conditions") is not None else \
        (obj.get("status") or {}).get("conditions") or []
    cleared = error_condition(base, True, "", int(obj["metadata"].get("generation") or 1), _now())
    if cleared is not None:
        patch["conditions"] = cleared


def _now() -> str:
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
