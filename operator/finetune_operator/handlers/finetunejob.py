"""kopf wiring for FineTuneJob: a timer runs the (idempotent) reconcile every couple of seconds."""
from __future__ import annotations

import json

import kopf

from ..builders.settings import OperatorSettings
from ..finetunejob import GROUP, VERSION, Reconciler

SETTINGS = OperatorSettings.from_env()


@kopf.timer(GROUP, VERSION, "finetunejobs", interval=2.0, idle=0)
def reconcile_finetunejob(body, patch, **_):
    def event(kind: str, reason: str, message: str) -> None:
        (kopf.warn if kind == "Warning" else kopf.info)(body, reason=reason, message=message)

    status: dict = {}
    obj = json.loads(json.dumps(body, default=dict))  # kopf's views -> plain dicts for the pure builders
    Reconciler(obj, status, event, SETTINGS).reconcile()
    if status:
        patch.status.update(status)
