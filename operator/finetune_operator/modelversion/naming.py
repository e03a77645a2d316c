"""Names derived from a version: the served (engine) name, defined once in finetune_api.naming, and
the model's production record."""
from __future__ import annotations

from finetune_api.naming import served_name, sha8

__all__ = ["record_name", "served_name", "sha8"]  # the served-name contract, re-exported


def record_name(model: str) -> str:
    """The ConfigMap holding a model's production record (one per model per namespace)."""
    return f"fto-model-{model}"
