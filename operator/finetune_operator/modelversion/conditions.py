"""Pure: the ModelVersion's condition types and reasons, and the one function deriving phase,
reason and message from the conditions (decide sets conditions only; the phase follows)."""
from __future__ import annotations

from typing import Optional

REGISTERED, GATES_PASSED, COMPATIBLE, PROMOTED, READY = "Registered", "GatesPassed", "Compatible", "Promoted", "Ready"

# Registered=False reasons that are not failures: waiting for the FineTuneJob, or for S3.
PENDING_REASONS = frozenset({"JobNotFound", "WaitingForJob"})
REGISTERING_REASONS = frozenset({"S3Unavailable", "CredentialsMissing", "AccessDenied"})
# Promoted=False reasons while this version holds the promotion lock.
PROMOTING_REASONS = frozenset({"Promoting", "Flipping", "Canary", "CanaryWeighting", "Cancelling"})
ROLLED_BACK_REASONS = frozenset({"RolledBack", "CanaryAborted"})
ARCHIVED = "Archived"
# Reasons whose events are Warnings.
WARNING_REASONS = frozenset({
    "DigestMismatch", "ManifestInvalid", "JobFailed", "IncompatibleAdapter", "GatesFailed", "PreloadFailed",
    "CanaryAborted", "RolledBack", "PromotionConflict", "NotFound", "AccessDenied", "CredentialsMissing",
    "PodsUnreachable", "AnalysisFailed", "RollbackImpossible", "VersionSkew", "NotApproved"})


def get(conditions: list, ctype: str) -> Optional[dict]:
    return next((c for c in conditions or [] if c["type"] == ctype), None)


def status_of(conditions: list, ctype: str) -> Optional[str]:
    c = get(conditions, ctype)
    return c["status"] if c else None


def put(conditions: list, ctype: str, ok: bool, reason: str, message: str, generation: int, now: str) -> list:
    """The list with ctype set; lastTransitionTime moves only when the condition's status changes."""
    status = "True" if ok else "False"
    old = get(conditions, ctype)
    new = {"type": ctype, "status": status, "reason": reason, "message": message[:32000],
           "observedGeneration": generation,
           "lastTransitionTime": old["lastTransitionTime"] if old and old["status"] == status else now}
    return [c for c in conditions or [] if c["type"] != ctype] + [new]


def phase_of(conditions: list) -> tuple[str, str, str]:
    """(phase, reason, message): Registered decides until the adapter is verified, then Promoted."""
    reg = get(conditions, REGISTERED)
    if reg is None:
        return "Pending", "", ""
    if reg["status"] != "True":
        phase = "Pending" if reg["reason"] in PENDING_REASONS else \
            "Registering" if reg["reason"] in REGISTERING_REASONS else "Failed"
        return phase, reg["reason"], reg["message"]
    promoted = get(conditions, PROMOTED)
    if promoted is None:
        return "Registered", reg["reason"], reg["message"]
    reason = promoted["reason"]
    if promoted["status"] == "True":
        phase = "Production"
    elif reason in ROLLED_BACK_REASONS:
        phase = "RolledBack"
    elif reason == ARCHIVED:
        phase = "Archived"
    elif reason in PROMOTING_REASONS:
        phase = "Promoting"
    else:
        phase = "Registered"
    return phase, reason, promoted["message"]
