"""Pure: the bake window's blind checks (spec.rollback), so a rollback query fails closed.

A check is blind when Prometheus did not answer (any QueryError, an unscoped query) or the query had
no data. Each blind check pushes the window's end out by intervalSeconds (a window nobody could see
does not count as baked); maxBlindChecks blind checks in a row apply spec.rollback.onBlind: Rollback
(as a breach would) or Hold (keep serving, condition Blind=True). A check with data resets the run.
The count lives in status.bakeWindow, tied to the promotion (promotedAt) it belongs to.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

CONDITION = "Blind"
DEFAULT_MAX = 60             # the CRD's default for spec.rollback.maxBlindChecks


@dataclasses.dataclass(frozen=True)
class Window:
    promoted_at: str = ""
    blind_checks: int = 0
    extended: float = 0.0


def current(status: Optional[dict], promoted_at: str) -> Window:
    """The window as status.bakeWindow recorded it, when it belongs to this promotion."""
    bw = (status or {}).get("bakeWindow") or {}
    if not promoted_at or bw.get("promotedAt") != promoted_at:
        return Window(promoted_at)
    return Window(promoted_at, int(bw.get("blindChecks") or 0), float(bw.get("extendedSeconds") or 0))


def is_blind(analysis) -> bool:
    return bool(analysis.error) or analysis.value is None


def after_check(window: Window, analysis, interval: float) -> Window:
    if is_blind(analysis):
        return dataclasses.replace(window, blind_checks=window.blind_checks + 1, extended=window.extended + interval)
    return dataclasses.replace(window, blind_checks=0)


def exhausted(window: Window, rollback: dict) -> bool:
    return window.blind_checks >= int(rollback.get("maxBlindChecks") or DEFAULT_MAX)


def why(analysis) -> str:
    """Plain words for a blind check (the error is already a fixed message: never a server's body)."""
    return analysis.error or "the query had no data"


def status_of(window: Window, ends_at: str) -> dict:
    return {"promotedAt": window.promoted_at, "blindChecks": window.blind_checks,
            "extendedSeconds": window.extended, "endsAt": ends_at}
