"""Names derived from a version: the served (engine) name and the model's production record."""
from __future__ import annotations


def sha8(digest: str) -> str:
    """First 8 hex characters of a 'sha256:<hex>' digest."""
    return digest.split(":", 1)[-1][:8]


def served_name(model: str, version: str, manifest_digest: str) -> str:
    """Content-addressed: a different manifest under the same version gets a different name, so an
    engine never reloads new weights in place under a name it has served (stale prefix-cache blocks)."""
    return f"{model}--{version}-{sha8(manifest_digest)}"


def record_name(model: str) -> str:
    """The ConfigMap holding a model's production record (one per model per namespace)."""
    return f"fto-model-{model}"
