"""Pure: PromQL templating and breach decisions for canary analysis and bake-window rollback."""
from __future__ import annotations

import math
import re
from typing import Optional

_VAR = re.compile(r"\$\{(version|model|namespace)\}|\$(version|model|namespace)\b")


def render(query: str, *, model: str, version: str, namespace: str) -> str:
    """Replaces $version, $model and $namespace (or ${...}) in the query."""
    values = {"version": version, "model": model, "namespace": namespace}
    return _VAR.sub(lambda m: values[m.group(1) or m.group(2)], query)


def value_of(response: dict) -> Optional[float]:
    """The number a Prometheus /api/v1/query answer holds: a scalar, or the first sample of a vector.
    None when the result is empty or NaN (no traffic yet: not a breach)."""
    data = (response or {}).get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and result:
        raw = result[1]
    elif data.get("resultType") == "vector" and result:
        raw = result[0]["value"][1]
    else:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def breached(value: Optional[float], threshold: float, comparison: str = "GreaterThan") -> bool:
    if value is None:
        return False
    return value < threshold if comparison == "LessThan" else value > threshold


def describe(value: Optional[float], threshold: float, comparison: str = "GreaterThan") -> str:
    op = "<" if comparison == "LessThan" else ">"
    shown = "no data" if value is None else f"{value:g}"
    return f"{shown} {'' if breached(value, threshold, comparison) else 'not '}{op} {threshold:g}"
