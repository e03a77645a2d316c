"""Pure: whether a child found by its fixed name is this job's, and how a name conflict is told.

Children have deterministic names (<job>-config, <job>-validate, <job>-train-<attempt>), so
anyone who may create objects in the namespace can take a name before the operator does. An
object is the job's only when one of its ownerReferences is a controller reference carrying the
job's UID; anything else is never used, patched or deleted, only reported (ChildNameConflict).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from .. import status as st

REASON = st.REASON_CHILD_NAME_CONFLICT
RECHECK_SECONDS = 10.0  # nothing watched tells the operator when the other object goes away


@dataclasses.dataclass(frozen=True)
class Conflict:
    kind: str
    name: str


FTJ_OWNER = ("FineTuneJob", "finetune.fto.dev/")
JOB_OWNER = ("Job", "batch/")


def owned(obj: Optional[dict], owner_uid: str, owner_kind: tuple = FTJ_OWNER) -> bool:
    """True when obj carries a controller ownerReference to the owner (by default a FineTuneJob) with owner_uid.

    Kind and group count too: the chart's ownership policy (vap-ownership.yaml) refuses
    FineTuneJob ownerReferences written by anyone but the operator, and a reference of another
    kind that merely copies the job's uid must not pass for one."""
    if not obj or not owner_uid:
        return False
    kind, api_prefix = owner_kind
    return any(ref.get("uid") == owner_uid and ref.get("controller") is True and ref.get("kind") == kind
               and str(ref.get("apiVersion") or "").startswith(api_prefix)
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def uid_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("uid") or ""


def message(conflicts) -> str:
    """The condition's and the event's message, naming each object (kind and name)."""
    named = ", ".join(f"{c.kind} {c.name}" for c in conflicts)
    verb = "exists" if len(conflicts) == 1 else "exist"
    return (f"{named} already {verb} and {'is' if len(conflicts) == 1 else 'are'} not owned by this FineTuneJob "
            "(no controller ownerReference with its uid): the operator does not use, change or delete "
            f"{'it' if len(conflicts) == 1 else 'them'}, and the job waits. Delete or rename "
            f"{'it' if len(conflicts) == 1 else 'them'} and the job continues.")
