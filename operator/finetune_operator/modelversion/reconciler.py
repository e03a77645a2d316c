"""The ModelVersion controller's pass: observe -> decide -> act, then one status write.

observe.py reads the world once into a Snapshot; decide.py (pure) returns the desired status, the
actions, the events and the requeue; act.py performs the actions in order. When an agent action
failed, decide runs once more on the same observation with what act did applied (no second read of
the pods), and that decision's status is the one written, only the fields that changed (an unchanged
status writes nothing, so a pass does not wake itself). See docs/modelversion.md.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Optional

from .. import metrics
from ..builders.settings import OperatorSettings
from . import act, decide as decider, record
from .observe import Observer
from .snapshot import AGENT_ACTIONS, Count, Emit, Report

log = logging.getLogger("finetune-operator.modelversion")
Event = Callable[[str, str, str], None]


class ModelVersionReconciler:
    def __init__(self, obj: dict, status_patch: dict, event: Event, settings: OperatorSettings, runtime=None):
        self.obj, self.out, self._emit, self.settings, self.runtime = obj, status_patch, event, settings, runtime
        self.sent: set = set()

    def reconcile(self) -> Optional[float]:
        try:
            decision, snap = self._pass()
        except record.Conflict as err:
            log.debug("%s/%s: %s", self.obj["metadata"].get("namespace"), self.obj["metadata"]["name"], err)
            return 0.2
        self.out.update(decider.changes(snap.status, decision.status))
        for event_type, reason, message in decision.events:
            if reason not in self.sent:
                self.event(event_type, reason, message)
        spec = snap.spec
        metrics.MODEL_VERSIONS.set((snap.meta["namespace"], snap.name), namespace=snap.meta["namespace"],
                                   model=spec["model"], stage=spec["stage"],
                                   phase=decision.status.get("phase") or snap.status.get("phase", "Pending"))
        return decision.requeue

    def _pass(self):
        observer = Observer(self.obj, self.settings, self.runtime)
        snap = observer.snapshot()
        now = time.time()
        decision = decider.decide(snap, now)
        actor = act.Actor(snap.meta["namespace"], snap.spec["model"], observer.store, observer, self.event,
                          self.runtime, snap.analysis.seen if snap.analysis else 0.0)
        rv = snap.record.resource_version if snap.record is not None else ""
        first = actor.run(decision.actions, rv)
        seconds = first.outcome.seconds
        if first.outcome.failures:
            again = dataclasses.replace(snap, views=_after(snap, first), outcome=first.outcome,
                                        record=first.record or snap.record)
            decision = decider.decide(again, now)
            done = tuple(a for a in first.performed if isinstance(a, (Emit, Count, Report)))
            rv = (first.record or snap.record).resource_version if (first.record or snap.record) else ""
            second = actor.run(decision.actions, rv, skip=done)
            seconds = seconds if seconds is not None else second.outcome.seconds
        return decider.measured(decision, seconds), snap

    def event(self, event_type: str, reason: str, message: str) -> None:
        self.sent.add(reason)
        self._emit(event_type, reason, message)


def _after(snap, result: act.Result) -> Optional[tuple]:
    """The observed views with each agent action applied where it succeeded."""
    if snap.views is None:
        return None
    views = list(snap.views)
    for action, ok in result.done:
        if isinstance(action, AGENT_ACTIONS):
            views = decider.assume(views, action, snap.spec["model"], only=ok)
    return tuple(views)
