"""Which ModelVersion `kubectl finetune rollback MODEL` restores (pure)."""
from __future__ import annotations

from .errors import PluginError


def versions_of(items: list[dict], model: str) -> list[dict]:
    return [mv for mv in items if (mv.get("spec") or {}).get("model") == model]


def current_production(versions: list[dict]) -> dict | None:
    """The version serving now: phase Production, else the latest promoted one still asking for production."""
    serving = [v for v in versions if (v.get("status") or {}).get("phase") == "Production"]
    if not serving:
        serving = [v for v in versions if v["spec"].get("stage") == "production"]
    return max(serving, key=_promoted_at, default=None)


def previous_production(versions: list[dict]) -> dict:
    """The version that was in production before the current one (latest status.promotedAt before it)."""
    current = current_production(versions)
    if current is None:
        raise PluginError("no version of this model is in production, so there is nothing to roll back from")
    earlier = [v for v in versions
               if v is not current and (v.get("status") or {}).get("promotedAt")
               and _promoted_at(v) < _promoted_at(current)
               and (v.get("status") or {}).get("phase") not in ("Failed",)]
    if not earlier:
        raise PluginError(f"{current['metadata']['name']} is the first version ever promoted; "
                          "there is no earlier production version to roll back to")
    return max(earlier, key=_promoted_at)


def _promoted_at(mv: dict) -> str:
    return (mv.get("status") or {}).get("promotedAt") or ""
