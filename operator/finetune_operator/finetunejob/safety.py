"""Pure: spec.dataSafety before the validate pod, and what its gate found after it.

The validate pod's gate (finetune_trainer.safety.gate) reports counts by check and entity type
and the first line numbers per check, never a matched value. What reaches status and events is
rebuilt here from known keys only (numbers, line numbers, entity type names), so a report that
carried anything else would still not put it in status.
"""
from __future__ import annotations

import re
from typing import Optional

from finetune_api.finetunejob_crd import SAFETY_CHECKS

REASON_MODERATION_NOT_ALLOWED = "ModerationEndpointNotAllowed"
REASON_FINDINGS = "DataSafetyFindings"  # Warning: the gate's Warn/Redact/Drop actions found something
MAX_LINES = 20
ROLES = ("train", "validation", "regression")
# Entity and secret type names as Presidio and detect-secrets spell them ("EMAIL_ADDRESS", "AWS Access Key").
_ENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9 _.-]{0,63}$")
_ACTIONS = ("Fail", "Redact", "Drop", "Warn")
# How the event names each check's findings: (singular, plural).
_NOUNS = {"pii": ("PII", "PII"), "secrets": ("secret", "secrets"),
          "specialTokens": ("row with special tokens", "rows with special tokens"),
          "nearDuplicates": ("near-duplicate row", "near-duplicate rows"),
          "leakage": ("held-out row leaking training data", "held-out rows leaking training data"),
          "cleaning": ("row cleaned", "rows cleaned"),
          "moderation": ("row flagged by moderation", "rows flagged by moderation")}


def moderation_refusal(spec: dict, allowed: dict) -> Optional[tuple[str, str]]:
    """(reason, message) when spec.dataSafety.moderation names an endpoint the platform team did not list."""
    name = ((spec.get("dataSafety") or {}).get("moderation") or {}).get("endpoint")
    if not name or name in allowed:
        return None
    offered = ", ".join(sorted(allowed)) or "none are configured"
    return (REASON_MODERATION_NOT_ALLOWED,
            f"spec.dataSafety.moderation.endpoint {name!r} is not a moderation endpoint the platform team "
            f"configured (dataSafety.moderationEndpoints: {offered}); name one of them or remove the field")


def _count(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _lines(value) -> list:
    return [n for n in value if _count(n) is not None][:MAX_LINES] if isinstance(value, list) else []


def _check(doc) -> Optional[dict]:
    if not isinstance(doc, dict):
        return None
    out: dict = {}
    if _count(doc.get("rows")) is not None:
        out["rows"] = doc["rows"]
    entities = doc.get("entities")
    if isinstance(entities, dict):
        kept = {k: v for k, v in entities.items() if isinstance(k, str) and _ENTITY.match(k) and _count(v)}
        if kept:
            out["entities"] = dict(sorted(kept.items())[:64])
    for key in ("lines", "trainLines"):
        if _lines(doc.get(key)):
            out[key] = _lines(doc[key])
    if doc.get("action") in _ACTIONS:
        out["action"] = doc["action"]
    if isinstance(doc.get("byRole"), dict):
        out["byRole"] = {r: doc["byRole"][r] for r in ROLES if _count(doc["byRole"].get(r)) is not None}
    return out


def status_doc(report) -> Optional[dict]:
    """status.datasetStats.safety from the gate's report (None when there was no gate)."""
    if not isinstance(report, dict) or not report:
        return None
    out = {name: c for name in SAFETY_CHECKS if (c := _check(report.get(name))) is not None}
    for key in ("changed", "dropped"):
        counts = report.get(key)
        if isinstance(counts, dict):
            out[key] = {r: counts[r] for r in ROLES if _count(counts.get(r)) is not None}
    return out


def _at(lines: list) -> str:
    if not lines:
        return ""
    return (" at line " if len(lines) == 1 else " at lines ") + ", ".join(str(n) for n in lines)


def _phrase(name: str, check: dict) -> Optional[str]:
    entities = check.get("entities") or {}
    total = sum(entities.values()) if entities and name in ("pii", "secrets") else check.get("rows", 0)
    if not total:
        return None
    singular, plural = _NOUNS[name]
    kinds = f" ({', '.join(f'{k} {v}' for k, v in entities.items())})" if name == "pii" and entities else ""
    return f"{total} {singular if total == 1 else plural}{kinds}{_at(check.get('lines') or [])}"


def event_message(safety: Optional[dict]) -> Optional[str]:
    """'data-safety: 3 PII (EMAIL_ADDRESS 2, PHONE_NUMBER 1) at lines 4, 9, 12; 1 secret at line 7', or None
    when nothing was found. Counts, type names and line numbers only."""
    if not safety:
        return None
    parts = [p for name in SAFETY_CHECKS if isinstance(safety.get(name), dict) and (p := _phrase(name, safety[name]))]
    return "data-safety: " + "; ".join(parts) if parts else None
