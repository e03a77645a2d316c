"""Kubernetes Events about our objects (core/v1, what `kubectl describe` and `kubectl events` show).

Repeats are folded, as client-go's EventCorrelator does: the same type, reason and message about the
same object (its uid) is one Event whose count and lastTimestamp grow, not a new Event each time. The
Event's name is derived from those four, so a restarted operator (or another replica) finds and
bumps the same Event. Without get/patch on events (an older chart's RBAC) it falls back to a new
Event per post, as before.
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import uuid

log = logging.getLogger("finetune-operator.events")
COMPONENT = "finetune-operator"
MAX_MESSAGE = 1024


def _stamp(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(obj: dict, event_type: str, reason: str, message: str) -> str:
    """Pure: <object>.<16 hex of sha256(uid, type, reason, message)>: one name per distinct event."""
    meta = obj["metadata"]
    key = "\x00".join((meta.get("uid", ""), event_type, reason, message[:MAX_MESSAGE]))
    return f"{meta['name'][:200]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def event_body(obj: dict, event_type: str, reason: str, message: str, now: datetime.datetime | None = None,
               name: str | None = None) -> dict:
    """Pure: the first Event for obj (count 1). name: event_name(...) unless given."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    meta = obj["metadata"]
    stamp = _stamp(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name or event_name(obj, event_type, reason, message), "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"],
                           "resourceVersion": meta.get("resourceVersion")},
        "type": event_type, "reason": reason, "message": message[:MAX_MESSAGE],
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
    }


def bump(existing: dict, now: datetime.datetime | None = None) -> dict:
    """Pure: the merge patch that records one more occurrence of an existing Event."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    count = int(existing.get("count") or 1) + 1
    meta = existing.get("metadata") or {}
    return {"metadata": {"resourceVersion": meta.get("resourceVersion") or meta.get("resource_version")},
            "count": count, "lastTimestamp": _stamp(now)}


def _status(err) -> int:
    return int(getattr(err, "status", 0) or 0)


def post(core_api, obj: dict, event_type: str, reason: str, message: str) -> None:
    ns = obj["metadata"]["namespace"]
    body = event_body(obj, event_type, reason, message)
    try:
        try:
            core_api.create_namespaced_event(ns, body)
            return
        except Exception as err:  # noqa: BLE001 - 409: this very event was posted before
            if _status(err) != 409:
                raise
        _bump(core_api, ns, body["metadata"]["name"], obj, event_type, reason, message)
    except Exception as err:  # noqa: BLE001 - an event lost must never fail a reconcile
        log.warning("could not post event %s for %s: %s", reason, obj["metadata"]["name"], _status(err) or
                    type(err).__name__)


def _bump(core_api, ns: str, name: str, obj: dict, event_type: str, reason: str, message: str) -> None:
    for _ in range(3):  # a 409 on the patch: someone bumped it in between; read again
        try:
            existing = core_api.read_namespaced_event(name, ns)
            existing = existing.to_dict() if hasattr(existing, "to_dict") else existing
            core_api.patch_namespaced_event(name, ns, bump(existing))
            return
        except Exception as err:  # noqa: BLE001
            if _status(err) == 409:
                continue
            if _status(err) in (403, 404):  # no get/patch granted, or expired just now: a fresh one
                fresh = event_body(obj, event_type, reason, message,
                                   name=f"{obj['metadata']['name'][:200]}.{uuid.uuid4().hex[:16]}")
                core_api.create_namespaced_event(ns, fresh)
                return
            raise
