"""Pure: which pods' alias does not point (fully) at the production version."""
from __future__ import annotations

from .pods import PodView


def skewed(views: list[PodView], model: str, name: str) -> list[str]:
    return [v.pod.name for v in views if v.ok and v.alias_target(model) != name]


def describe(views: list[PodView], model: str, name: str) -> str:
    names = skewed(views, model, name)
    by_pod = {v.pod.name: v.alias_summary(model) or "nothing" for v in views}
    return ", ".join(f"{p} -> {by_pod[p]}" for p in names)
