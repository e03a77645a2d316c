"""Leader election with a coordination.k8s.io/v1 Lease, so two operator replicas never both act.

The holder renews the Lease every `renew_seconds`; a candidate takes it over once it has not
been renewed for `lease_seconds`. "Not renewed" is judged as client-go does, by observed time:
the candidate remembers the Lease record (holder, renewTime, resourceVersion) it last read and
when, on its own monotonic clock, that record last CHANGED; the Lease is expired once it has not
changed for the Lease's duration. The holder's renewTime is never compared with the local
clock, so clock skew between nodes can neither steal a live Lease nor keep a dead one. Writes
carry the Lease's resourceVersion, so of two candidates racing for an expired Lease exactly one
wins. A holder that cannot renew in time steps down before anyone else may take over (renew
deadline < lease duration), and every apiserver call of the election has a total deadline
shorter than that renew deadline, so a stuck call cannot outlast the Lease.
"""
from __future__ import annotations

import datetime
import logging
import socket
import os
import threading
import time
from typing import Callable, Optional

from .. import deadline

log = logging.getLogger("finetune-operator.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _micro(ts: datetime.datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_record(lease) -> tuple:
    """What observed-time expiry watches for change: who holds it, its renewTime, its resourceVersion."""
    spec = lease.spec
    return (spec.holder_identity, str(spec.renew_time or spec.acquire_time or ""), lease.metadata.resource_version)


def observe(seen: Optional[tuple], seen_at: float, record: tuple, now: float) -> tuple:
    """Pure: (record, when it was first seen as it is now): the time resets only when it changed."""
    return (record, seen_at) if record == seen else (record, now)


def expired(seen_at: float, now: float, lease_seconds: float) -> bool:
    """Pure: the Lease has not changed for its whole duration, by our own monotonic clock."""
    return now - seen_at > lease_seconds


def default_identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


class LeaseElector:
    def __init__(self, coordination_api, namespace: str, name: str, identity: str | None = None,
                 lease_seconds: int = 15, renew_seconds: float = 2.0,
                 on_started_leading: Callable[[], None] = lambda: None,
                 on_stopped_leading: Callable[[], None] = lambda: None):
        self.api, self.namespace, self.name = coordination_api, namespace, name
        self.identity = identity or default_identity()
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.on_started, self.on_stopped = on_started_leading, on_stopped_leading
        self._leading = threading.Event()
        self._last_renew = 0.0
        self._stop = threading.Event()
        self._seen: Optional[tuple] = None   # the Lease record last read, and since when it is so
        self._seen_at = 0.0
        # Each apiserver call of the election ends well before a holder must step down.
        self.call_seconds = max(0.5, min(self.lease_seconds * 0.66 - self.renew_seconds, self.lease_seconds / 3))

    @property
    def is_leader(self) -> bool:
        # Stop acting before the Lease can expire for others, even if the renew thread is stuck.
        if self._leading.is_set() and time.monotonic() - self._last_renew > self.lease_seconds * 0.66:
            self._step_down("the Lease was not renewed in time")
        return self._leading.is_set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                held = self._try_acquire_or_renew()
            except Exception as err:  # noqa: BLE001 - the apiserver may be briefly unreachable
                log.warning("leader election: %s", err)
                held = False
            if held:
                self._last_renew = time.monotonic()
                if not self._leading.is_set():
                    log.info("became the leader (%s/%s as %s)", self.namespace, self.name, self.identity)
                    self._leading.set()
                    self.on_started()
            elif self._leading.is_set():
                self._step_down("another replica holds the Lease")
            self._stop.wait(self.renew_seconds)

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if release and self._leading.is_set():
            try:  # let a standby take over at once instead of after lease_seconds
                self._bounded(self.api.patch_namespaced_lease, self.name, self.namespace,
                              {"spec": {"holderIdentity": None}})
            except Exception:  # noqa: BLE001
                pass
            self._step_down("shutting down")

    def _step_down(self, why: str) -> None:
        if self._leading.is_set():
            log.warning("stopped leading: %s", why)
            self._leading.clear()
            self.on_stopped()

    def _bounded(self, call, *args):
        """An apiserver call under a total deadline (and a per-read timeout) of call_seconds."""
        with deadline.within(self.call_seconds, "leader election"):
            return call(*args, _request_timeout=self.call_seconds)

    def _try_acquire_or_renew(self) -> bool:
        from kubernetes.client.exceptions import ApiException
        now = _now()
        try:
            lease = self._bounded(self.api.read_namespaced_lease, self.name, self.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, acquired=True, transitions=0)}
            try:
                self._bounded(self.api.create_namespaced_lease, self.namespace, body)
                return True
            except ApiException as err2:
                if err2.status == 409:
                    return False
                raise
        spec = lease.spec
        holder = spec.holder_identity
        self._seen, self._seen_at = observe(self._seen, self._seen_at, lease_record(lease), time.monotonic())
        if holder and holder != self.identity and \
                not expired(self._seen_at, time.monotonic(), spec.lease_duration_seconds or self.lease_seconds):
            return False
        mine = holder == self.identity
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        body = {"metadata": {"resourceVersion": lease.metadata.resource_version},
                "spec": self._spec(now, acquired=not mine, transitions=transitions,
                                   acquire_time=None if not mine else spec.acquire_time)}
        try:
            self._bounded(self.api.replace_namespaced_lease, self.name, self.namespace, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": lease.metadata.resource_version},
                "spec": body["spec"]})
            return True
        except ApiException as err:
            if err.status == 409:  # someone else wrote first
                return False
            raise

    def _spec(self, now, acquired: bool, transitions: int, acquire_time=None) -> dict:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": _micro(now) if acquired or acquire_time is None else _micro(acquire_time),
                "renewTime": _micro(now), "leaseTransitions": transitions}


class AlwaysLeader:
    """No election (a single local run)."""
    is_leader = True

    def run(self) -> None:
        pass

    def stop(self, release: bool = True) -> None:
        pass
