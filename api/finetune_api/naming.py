"""Served adapter names: what an engine calls a loaded adapter.

'<model>--<version>-<sha8>', sha8 being the first 8 hex digits of the manifest digest
(finetune_api.manifest.digest). Content-addressed: a different manifest under the same version gets
a different name, so an engine never reloads new weights in place under a name it has served
(stale prefix-cache blocks). The operator computes it to route and check replicas; the adapter
agent computes it when it loads.
"""
from __future__ import annotations

import re

NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
SEPARATOR = "--"


def sha8(digest: str) -> str:
    """First 8 hex characters of a 'sha256:<hex>' digest."""
    return digest.split(":", 1)[-1][:8]


def served_name_problem(model: str, version: str, manifest_digest: str) -> str:
    """Why these parts cannot make a served name ('' when they can)."""
    for field, value in (("model", model), ("version", version)):
        if not isinstance(value, str) or not NAME.match(value):
            return (f"{field} must be 1-63 lower-case letters, digits, '.', '_' or '-', starting and ending "
                    f"with a letter or digit (got {value!r})")
    if not isinstance(manifest_digest, str) or not SHA256.match(manifest_digest):
        return f"manifest digest must be sha256:<64 hex> (got {manifest_digest!r})"
    return ""


def served_name(model: str, version: str, manifest_digest: str) -> str:
    """ValueError (saying which part is wrong) unless model and version are DNS-like and the digest is sha256."""
    problem = served_name_problem(model, version, manifest_digest)
    if problem:
        raise ValueError(problem)
    return f"{model}{SEPARATOR}{version}-{sha8(manifest_digest)}"
