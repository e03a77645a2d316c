"""Pure: from observed pod states, what to do next on each pod (preload, flip, weights, undo)."""
from __future__ import annotations

from .pods import PodView


def to_preload(views: list[PodView], name: str) -> list[PodView]:
    return [v for v in views if v.ok and name not in v.loaded]


def to_flip(views: list[PodView], model: str, name: str) -> list[PodView]:
    return [v for v in views if v.ok and v.alias_target(model) != name]


def to_weigh(views: list[PodView], model: str, weights: dict) -> list[PodView]:
    wanted = {n: w for n, w in weights.items() if w}
    return [v for v in views if v.ok and {n: w for n, w in v.weights(model).items() if w} != wanted]


def to_unload(views: list[PodView], model: str, name: str) -> list[PodView]:
    """Pods where name is loaded but no alias routes to it: safe to unload (undo of a failed preload)."""
    return [v for v in views if v.ok and name in v.loaded and not v.weights(model).get(name)]


def unreachable(views: list[PodView]) -> dict:
    return {v.pod.name: v.error for v in views if not v.ok}


def canary_weights(new: str, old: str, weight: int) -> dict:
    return {new: weight, old: 100 - weight} if old and old != new else {new: 100}
