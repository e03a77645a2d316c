"""The model's production record: which version is in effect, which was before, who is promoting,
and how each production request was decided.

Why a separate object: a ModelVersion's status only shows its own state, and users or GitOps may
leave `stage: production` on several objects. "Current production" is therefore not spec.stage
alone but this record, one ConfigMap per model per tenant namespace. It lives in the operator's own
namespace (`home()`: the chart's release namespace), named `fto-record-<namespace>.<model>`, where
tenants cannot write it: a record a tenant could edit would let them point production at a version
no promoter approved. Every change is a compare-and-swap (update with the resourceVersion read), so
two versions racing for production cannot both win: one write succeeds, the other gets 409 and
decides again on the fresh record.

A request is (version object name, metadata.generation while spec.stage is production). Once decided
(won, lost, failed, aborted, rolled back) it is not retried until the object's spec changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Optional

# Decision results.
PROMOTING, WON, LOST, FAILED, ABORTED, ROLLED_BACK, CANCELLED = (
    "promoting", "won", "lost", "failed", "aborted", "rolledBack", "cancelled")
HISTORY = 20
PREFIX = "fto-record-"
_home = ""   # set once at start-up (configure); see home()


def configure(namespace: str) -> None:
    """The namespace the records live in (the operator's own; `--record-namespace`)."""
    global _home
    _home = namespace


def home() -> str:
    return _home or os.environ.get("FTO_RECORD_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "default"


def record_name(namespace: str, model: str) -> str:
    """`fto-record-<namespace>.<model>`. Both parts are DNS labels (no dots, at most 63 characters), so
    the dot keeps namespaces apart (`a-b` + `c` is not `a` + `b-c`) and the name fits a ConfigMap's 253;
    a longer one (never from admitted objects) is cut and made unique with a hash."""
    name = f"{PREFIX}{namespace}.{model}"
    if len(name) <= 253:
        return name
    return f"{name[:235]}-{hashlib.sha256(f'{namespace}/{model}'.encode()).hexdigest()[:16]}"


def record_ref(namespace: str, model: str) -> str:
    """`<record namespace>/<name>`: where status.productionRecord says the record is."""
    return f"{home()}/{record_name(namespace, model)}"


@dataclasses.dataclass
class Record:
    production: str = ""            # ModelVersion object name in effect
    production_version: str = ""    # its spec.version
    served_name: str = ""           # its served name; the base model's name when the alias was rolled
                                    # back to the base (production is "" then)
    promoted_at: str = ""
    previous: str = ""              # the one before (automatic rollback restores it)
    previous_version: str = ""
    previous_served_name: str = ""
    promoting: dict = dataclasses.field(default_factory=dict)  # {name, generation, since, step, stepStartedAt, ...}
    decisions: dict = dataclasses.field(default_factory=dict)  # name -> {generation, result, by, at, ...}
    history: list = dataclasses.field(default_factory=list)    # [{at, event, version}]
    resource_version: str = ""

    @classmethod
    def from_configmap(cls, cm: Optional[dict]) -> "Record":
        if not cm:
            return cls()
        d = cm.get("data") or {}
        return cls(production=d.get("production", ""), production_version=d.get("productionVersion", ""),
                   served_name=d.get("servedName", ""), promoted_at=d.get("promotedAt", ""),
                   previous=d.get("previous", ""), previous_version=d.get("previousVersion", ""),
                   previous_served_name=d.get("previousServedName", ""),
                   promoting=json.loads(d.get("promoting") or "{}"),
                   decisions=json.loads(d.get("decisions") or "{}"),
                   history=json.loads(d.get("history") or "[]"),
                   resource_version=(cm.get("metadata") or {}).get("resourceVersion", ""))

    def data(self) -> dict:
        return {"production": self.production, "productionVersion": self.production_version,
                "servedName": self.served_name, "promotedAt": self.promoted_at, "previous": self.previous,
                "previousVersion": self.previous_version, "previousServedName": self.previous_served_name,
                "promoting": json.dumps(self.promoting, sort_keys=True),
                "decisions": json.dumps(self.decisions, sort_keys=True),
                "history": json.dumps(self.history[-HISTORY:])}

    # --- questions ---------------------------------------------------------------------------------
    def decision(self, name: str, generation: int) -> Optional[dict]:
        """How this object's production request at this generation was decided (None: not yet)."""
        d = self.decisions.get(name)
        return d if d and d.get("generation") == generation else None

    def holder(self) -> str:
        return self.promoting.get("name", "")

    def on_base(self) -> bool:
        """The alias serves the base model: the first production version was rolled back."""
        return not self.production and bool(self.served_name)

    # --- changes (pure; the store writes them) ------------------------------------------------------
    def decide(self, name: str, generation: int, result: str, now: str, **details) -> None:
        self.decisions[name] = {"generation": generation, "result": result, "at": now, **details}

    def log(self, now: str, event: str, version: str) -> None:
        self.history = (self.history + [{"at": now, "event": event, "version": version}])[-HISTORY:]

    def set_production(self, name: str, version: str, served: str, now: str) -> None:
        if self.production and self.production != name:
            self.previous, self.previous_version, self.previous_served_name = (
                self.production, self.production_version, self.served_name)
        self.production, self.production_version, self.served_name, self.promoted_at = name, version, served, now

    def restore_previous(self, now: str, base_served: str = "") -> None:
        """Automatic rollback: the previous version is production again; the rolled-back one is not kept
        as 'previous' (rolling back twice must not return to the bad version). With no previous
        version the alias goes to the base model (`base_served`): no version is production then."""
        if self.previous:
            self.production, self.production_version, self.served_name = (
                self.previous, self.previous_version, self.previous_served_name)
        else:
            self.production, self.production_version, self.served_name = "", "", base_served
        self.previous = self.previous_version = self.previous_served_name = ""
        self.promoted_at = now
        self.promoting = {}


@dataclasses.dataclass(frozen=True)
class Contender:
    """Another version of the model asking for production, undecided, and able to promote."""
    name: str
    created: str   # metadata.creationTimestamp (RFC 3339, sorts as text)


def first_in_line(me: Contender, others: list[Contender]) -> Contender:
    """Two versions asking at once: the older object wins, then the smaller name (deterministic)."""
    return min([me, *others], key=lambda c: (c.created, c.name))


class Conflict(Exception):
    """The record changed since it was read (409): decide again on the fresh one."""


class Store:
    """Reads and compare-and-swaps the record ConfigMap of `model` in tenant namespace `tenant`,
    kept in `namespace` (the operator's own)."""

    def __init__(self, core_api, namespace: str, name: str, model: str, tenant: str = ""):
        self.core, self.namespace, self.name, self.model = core_api, namespace, name, model
        self.labels = {"app.kubernetes.io/managed-by": "finetune-operator", "finetune.fto.dev/model": model,
                       **({"finetune.fto.dev/namespace": tenant} if tenant else {})}

    def read(self, create: bool = False) -> Record:
        from .. import kube
        cm = kube.read_or_none(lambda n, **k: self.core.read_namespaced_config_map(n, self.namespace, **k),
                               self.name)
        if cm is None and create:
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels},
                    "data": Record().data()}
            cm = kube.create_or_get(
                lambda b, **k: self.core.create_namespaced_config_map(self.namespace, b, **k),
                lambda n, **k: self.core.read_namespaced_config_map(n, self.namespace, **k), body)
        return Record.from_configmap(cm)

    def write(self, record: Record) -> Record:
        """Compare-and-swap: a record read as absent (no resourceVersion) is created, else patched with the
        resourceVersion read; either way a concurrent writer makes this raise Conflict."""
        from kubernetes.client.exceptions import ApiException

        from .. import kube
        meta = {"name": self.name, "namespace": self.namespace}
        try:
            if not record.resource_version:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "data": record.data(),
                        "metadata": {**meta, "labels": self.labels}}
                cm = kube.raw(self.core.create_namespaced_config_map(self.namespace, body, _preload_content=False))
            else:
                body = {"metadata": {**meta, "resourceVersion": record.resource_version}, "data": record.data()}
                cm = kube.raw(self.core.patch_namespaced_config_map(self.name, self.namespace, body,
                                                                    _preload_content=False))
        except ApiException as err:
            if err.status == 409:
                raise Conflict(f"production record {self.name} changed; deciding again") from err
            raise
        record.resource_version = cm["metadata"]["resourceVersion"]
        return record
