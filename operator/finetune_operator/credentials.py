"""The one way the operator reads a Secret for a tenant's object (S3 credentials, a serving
target's adminTokenSecretRef).

Only Secrets that carry the opt-in label `finetune.fto.dev/credentials: "true"` are ever read:
naming a Secret in a spec must never hand its value to someone who may not read it (admission
also checks that the requester may `get` it; see charts/.../vap-secrets.yaml). A refusal names
the Secret and the field, never the value.
"""
from __future__ import annotations

from typing import Optional

from .storage import StorageError

LABEL = "finetune.fto.dev/credentials"
NOT_OPTED_IN = "SecretNotOptedIn"
MISSING = "CredentialsMissing"


def refusal(secret: Optional[dict], name: str, field: str) -> Optional[StorageError]:
    """Why this Secret may not be used for `field` (None when it may)."""
    if secret is None:
        return StorageError(MISSING, f"{field}: Secret {name!r} does not exist in this namespace")
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL) != "true":
        return StorageError(NOT_OPTED_IN, f"{field}: Secret {name!r} is not labelled {LABEL}: \"true\"; the "
                                          "operator reads only Secrets opted in for fine-tuning (label it, or "
                                          "ask whoever owns it)")
    return None


def check(secret: Optional[dict], name: str, field: str) -> dict:
    """The Secret, if it may be used for field; else StorageError (CredentialsMissing or SecretNotOptedIn)."""
    err = refusal(secret, name, field)
    if err is not None:
        raise err
    return secret


def read(core_api, namespace: str, name: str, field: str) -> dict:
    """Reads Secret `name` in the object's own namespace for `field`; refuses unlabelled ones."""
    from . import kube
    secret = kube.read_or_none(lambda n, **k: core_api.read_namespaced_secret(n, namespace, **k), name)
    return check(secret, name, field)
