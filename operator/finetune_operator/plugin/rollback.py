"""Which ModelVersion `kubectl finetune rollback MODEL` restores (pure).

"Which version is production" has one answer, the model's production record, read through
modelversion.production (the same function the operator decides with). The record lives in the
operator's namespace (status.productionRecord says `<namespace>/<name>`), which most users may not
read: pass its ConfigMap when the user could read it; without it, the version whose status says
Production is used (the operator writes that phase from the same record). A productionRecord
without a namespace is an old record in the tenant's own namespace: it is never read, since
anyone with edit there could have written it.
"""
from __future__ import annotations

from typing import Optional

from ..modelversion import production
from .errors import PluginError


def versions_of(items: list[dict], model: str) -> list[dict]:
    return [mv for mv in items if (mv.get("spec") or {}).get("model") == model]


def record_name(versions: list[dict]) -> Optional[str]:
    """The production record's ConfigMap, as the versions' status names it."""
    return next(((v.get("status") or {}).get("productionRecord") for v in versions
                 if (v.get("status") or {}).get("productionRecord")), None)


def record_location(versions: list[dict]) -> Optional[tuple[str, str]]:
    """(namespace, name) of the record in the operator's namespace; None when status names none, or only
    an old tenant-namespace record."""
    where = record_name(versions) or ""
    namespace, _, name = where.partition("/")
    return (namespace, name) if namespace and name else None


def current_production(versions: list[dict], record: Optional[dict] = None) -> dict | None:
    """The version serving now (None: none, or the base model after a rollback of the first version)."""
    if record is not None:
        return _named(versions, production.in_effect(production.record_of(record)).name)
    serving = [v for v in versions if (v.get("status") or {}).get("phase") == "Production"]
    return max(serving, key=_promoted_at, default=None)


def previous_production(versions: list[dict], record: Optional[dict] = None) -> dict:
    """The version that was in production before the current one: the record's previous version, or
    (without the record) the latest status.promotedAt before the current one's."""
    current = current_production(versions, record)
    if current is None:
        raise PluginError("no version of this model is in production, so there is nothing to roll back from")
    if record is not None:
        previous = _named(versions, production.in_effect(production.record_of(record)).previous)
        if previous is None:
            raise PluginError(f"{current['metadata']['name']} has no previous production version to roll back "
                              "to (it is the first ever promoted, or the one before it was rolled back)")
        return previous
    earlier = [v for v in versions
               if v is not current and (v.get("status") or {}).get("promotedAt")
               and _promoted_at(v) < _promoted_at(current)
               and (v.get("status") or {}).get("phase") not in ("Failed",)]
    if not earlier:
        raise PluginError(f"{current['metadata']['name']} is the first version ever promoted; "
                          "there is no earlier production version to roll back to")
    return max(earlier, key=_promoted_at)


def _named(versions: list[dict], name: str) -> dict | None:
    return next((v for v in versions if v["metadata"]["name"] == name), None) if name else None


def _promoted_at(mv: dict) -> str:
    return (mv.get("status") or {}).get("promotedAt") or ""
