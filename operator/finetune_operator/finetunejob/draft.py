"""The decision being built: the status copy, actions and events that decide's helpers write to,
and the small steps shared by more than one path (fail, the TTL, the ConfigMap)."""
from __future__ import annotations

import copy
import dataclasses
import datetime
from typing import Optional

from .. import status as st
from ..builders import trainer_config
from .snapshot import Snapshot, caps_enabled

# Action kinds; act.py performs each idempotently.
CREATE = "Create"                  # body; AlreadyExists is done
DELETE_CHILDREN = "DeleteChildren"  # TTL: the trainer Jobs, Services, validate pod, ConfigMap
STOP_TRAINER = "StopTrainer"       # delete the attempt's Job (SIGTERM, checkpoint) and the validate pod
SET_JOB_SUSPEND = "SetJobSuspend"  # name, value
PATCH_FINALIZERS = "PatchFinalizers"  # value: the list
WAKE_NAMESPACE = "WakeNamespace"   # jobs queued behind the caps look again
DELETE_CONFIG_MAP = "DeleteConfigMap"  # name, value: its uid (the delete's precondition)


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str
    name: str = ""
    body: Optional[dict] = None
    value: object = None


@dataclasses.dataclass(frozen=True)
class Decision:
    status: dict          # the whole status the job should have
    actions: tuple
    events: tuple         # (type, reason, message)
    requeue: Optional[float]


def iso(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Draft:
    """What a decision accumulates; decide's helpers write only here."""

    def __init__(self, s: Snapshot, now: float):
        self.s, self.now, self.stamp = s, now, iso(now)
        self.status = copy.deepcopy(s.status)
        self.actions: list = []
        self.events: list = []

    def condition(self, ctype: str, ok: bool, reason: str, message: str) -> None:
        self.status["conditions"] = st.condition(self.status.get("conditions") or [], ctype, ok, reason, message,
                                                 self.s.generation, self.stamp)

    def cond(self, ctype: str) -> Optional[str]:
        return st.condition_status(self.status.get("conditions"), ctype)

    def set(self, **fields) -> None:
        self.status.update(fields)

    def act(self, kind: str, **fields) -> None:
        self.actions.append(Action(kind, **fields))

    def event(self, event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))

    def deadline_left(self) -> Optional[float]:
        """The one deadline: spec.lifecycle.activeDeadlineSeconds from status.startTime (the first start)."""
        return st.deadline_left(self.s.spec, self.status.get("startTime"), self.now)

    def with_deadline(self, requeue: Optional[float]) -> Optional[float]:
        left = self.deadline_left()
        if left is None:
            return requeue
        return max(0.5, left) if requeue is None else min(requeue, max(0.5, left))

    def wake_waiting(self) -> None:
        if caps_enabled(self.s.settings):
            self.act(WAKE_NAMESPACE)


# --- finished, cancel, deadline ----------------------------------------------------------------
def after_finish(d: Draft) -> Optional[float]:
    """TTL: delete the children (Jobs, pods, Services, ConfigMap); the FineTuneJob and its status stay."""
    if d.status.get("childrenDeletedAt"):
        return None
    left = st.ttl_left(d.s.spec, d.status.get("completionTime"), d.now)
    if left is None:
        return None
    if left > 0:
        return left
    d.act(DELETE_CHILDREN)
    d.set(childrenDeletedAt=d.stamp)
    d.event("Normal", st.REASON_CLEANED_UP,
            f"spec.lifecycle.ttlSecondsAfterFinished ({d.s.life['ttlSecondsAfterFinished']}s) passed: "
            "deleted the trainer Jobs, pods, Services and ConfigMap; this FineTuneJob and its status stay")
    return None


def fail(d: Draft, reason: str, message: str) -> Optional[float]:
    if d.cond(st.RUNNING) == "True":
        d.condition(st.RUNNING, False, reason, message)
    d.condition(st.SUCCEEDED, False, reason, message)
    d.set(completionTime=d.stamp)
    d.wake_waiting()
    return after_finish(d)


def config_for_pods(d: Draft) -> Optional[str]:
    """The digest of the config the next pod mounts, creating the ConfigMap if it is not there; None
    while an outdated one of ours (the spec or the operator's settings changed since) is replaced:
    it is immutable, so it is deleted now and written again on the next pass."""
    body = trainer_config.config_map(d.s.obj, d.s.settings)
    cm = d.s.config_map
    if cm is None:
        d.act(CREATE, body=body)
    elif (cm.get("data") or {}) != body["data"] or not cm.get("immutable"):
        d.act(DELETE_CONFIG_MAP, name=cm["metadata"]["name"], value=cm["metadata"].get("uid", ""))
        return None
    return trainer_config.digest(body["data"][trainer_config.CONFIG_KEY])
