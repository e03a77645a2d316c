"""The worker side of the runtime: keys in, reconcilers run, status and events out."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Iterable, Optional

from .. import kube, metrics
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


class Runtime:
    def __init__(self, settings, kinds: Iterable[Kind], elector, namespaces: Optional[list] = None,
                 workers: int = 4, resync_seconds: float = 60.0):
        self.settings, self.elector = settings, elector
        self.kinds = {k.plural: k for k in kinds}
        self.namespaces = namespaces or None
        self.queue = WorkQueue()
        self.workers, self.resync_seconds = workers, resync_seconds
        self._failures: dict = {}
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
                    self._process(key)
            finally:
                self.queue.done(key)

    def _process(self, key) -> None:
        plural, namespace, name = key
        kind = self.kinds[plural]
        started = time.monotonic()
        try:
            requeue = self.reconcile_once(kind, namespace, name)
            self._failures.pop(key, None)
        except LostLeadership:
            log.info("stopped reconciling %s %s/%s: lost the Lease mid-pass", plural, namespace, name)
            requeue = None
        except Exception as err:  # noqa: BLE001 - log, back off, try again
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            requeue = min(60.0, 0.5 * 2 ** min(failures, 7))
            from kubernetes.client.exceptions import ApiException
            if isinstance(err, ApiException) and err.status == 409:
                requeue = 0.2  # a write raced with a change: re-read and decide again
                log.debug("conflict on %s/%s %s; retrying", namespace, name, plural)
            else:
                log.exception("reconciling %s %s/%s failed (retry in %.1fs)", plural, namespace, name, requeue)
        finally:
            metrics.RECONCILE_SECONDS.labels(plural).observe(time.monotonic() - started)
        if requeue is not None:
            self.queue.add(key, requeue)

    def reconcile_once(self, kind: Kind, namespace: str, name: str) -> Optional[float]:
        custom, core = kube.custom(), kube.core()
        obj = kube.read_or_none(
            lambda n, **k: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, n, **k), name)
        deleting = bool(obj and obj["metadata"].get("deletionTimestamp"))
        if obj is None or (deleting and not hasattr(kind.reconciler, "finalize")):
            kind.forget(namespace, name)
            return None
        patch: dict = {}
        emitted: list = []
        reconciler = kind.reconciler(obj, patch, lambda *e: emitted.append(e), self.settings, self)
        # A deleting object is only finalized (its own finalizer, if it has one), never reconciled.
        requeue = reconciler.finalize() if deleting else reconciler.reconcile()
        if deleting and requeue is None:
            kind.forget(namespace, name)
        self.fence()  # a status decided by a replica that lost the Lease is not written
        if patch:
            # The resourceVersion makes the write conditional: a status decided from a stale read is
            # refused (409) and the pass runs again on the fresh object, so status never goes back.
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, kind.plural, name,
                {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": patch})
        for event_type, reason, message in emitted:
            k8s_events.post(core, obj, event_type, reason, message)
        return requeue
