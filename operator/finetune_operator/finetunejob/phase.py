"""Pure: a FineTuneJob's phase, derived from its conditions in one place, and the phase order.

The documented order (docs/operator.md) is Pending < Validating < Queued < Running < a terminal
phase (Succeeded, Failed, Cancelled). Suspended stands aside from it. Within one attempt the
phase only moves forward; it goes back to Queued only when a new attempt starts (a retry) or
when a suspended job resumes.
"""
from __future__ import annotations

from typing import Optional

from .. import status as st

TERMINAL = st.TERMINAL
ORDER = {"Pending": 0, "Validating": 1, "Queued": 2, "Running": 3, "Succeeded": 4, "Failed": 4, "Cancelled": 4}


def rank(phase: Optional[str]) -> int:
    """Position in the documented order; Suspended (outside it) ranks with Queued."""
    return ORDER.get(phase or "Pending", ORDER["Queued"])


def _cond(conditions: list, ctype: str) -> Optional[dict]:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)


def derive(conditions: list) -> tuple[str, str, str]:
    """(phase, reason, message) from the conditions: the one function that sets status.phase.

    Succeeded (the summary) decides a finished job; then Suspended; then Running, whose reason
    says why an attempt is not running yet (WaitingForCapacity, WaitingForKueue, Retrying,
    Resumed, Training: waiting for pods); then Validated."""
    done = _cond(conditions, st.SUCCEEDED)
    if done and done["status"] == "True":
        return "Succeeded", done["reason"], done["message"]
    if done and done["status"] == "False":
        phase = "Cancelled" if done["reason"] == st.REASON_CANCELLED else "Failed"
        return phase, done["reason"], done["message"]
    suspended = _cond(conditions, st.SUSPENDED)
    if suspended and suspended["status"] == "True":
        return "Suspended", suspended["reason"], suspended["message"]
    validated = _cond(conditions, st.VALIDATED)
    running = _cond(conditions, st.RUNNING)
    if validated and validated["status"] == "True":
        if running and running["status"] == "True":
            return "Running", running["reason"], running["message"]
        if running:
            return "Queued", running["reason"], running["message"]
        return "Queued", st.REASON_DATASET_VALID, validated["message"]
    if validated:
        return "Validating", validated["reason"], validated["message"]
    return "Pending", "Accepted", "accepted; checking the request"


def moved_backwards(before: dict, after: dict) -> bool:
    """True when `after` is behind `before` in the documented order without a reason that allows
    it: a new attempt (attempts grew), or leaving/entering Suspended."""
    old, new = before.get("phase"), after.get("phase")
    if old in TERMINAL:
        return new != old
    if "Suspended" in (old, new):
        return False
    if int(after.get("attempts") or 0) > int(before.get("attempts") or 0):
        return False
    return rank(new) < rank(old)
