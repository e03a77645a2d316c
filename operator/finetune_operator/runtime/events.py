"""Kubernetes Events about our objects (core/v1, what `kubectl describe` and `kubectl events` show)."""
from __future__ import annotations

import datetime
import logging
import uuid

log = logging.getLogger("finetune-operator.events")
COMPONENT = "finetune-operator"


def event_body(obj: dict, event_type: str, reason: str, message: str, now: datetime.datetime | None = None) -> dict:
    """Pure: the Event for obj. Names are unique, as kubelet's are (<object>.<random>)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    meta = obj["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name'][:200]}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"],
                           "resourceVersion": meta.get("resourceVersion")},
        "type": event_type, "reason": reason, "message": message[:1024],
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
    }


def post(core_api, obj: dict, event_type: str, reason: str, message: str) -> None:
    try:
        core_api.create_namespaced_event(obj["metadata"]["namespace"], event_body(obj, event_type, reason, message))
    except Exception as err:  # noqa: BLE001 - an event lost must never fail a reconcile
        log.warning("could not post event %s for %s: %s", reason, obj["metadata"]["name"], err)
