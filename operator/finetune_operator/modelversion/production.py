"""Pure: which version of a model is production. The one answer, from the model's production record
(record.py); the reconciler, status.promotedAt and `kubectl finetune rollback` all ask this module."""
from __future__ import annotations

import dataclasses
from typing import Optional

from .record import Record

BASE_VERSION = "base"   # the version name shown when the alias serves the base model


@dataclasses.dataclass(frozen=True)
class InEffect:
    name: str            # ModelVersion object name in production ("" when none, or on the base model)
    version: str         # its spec.version (BASE_VERSION on the base model, "" when none)
    served_name: str     # what the alias points at
    since: str           # when it became production (RFC 3339)
    previous: str        # the object an automatic rollback restores ("" when the base model would be)

    @property
    def on_base(self) -> bool:
        return not self.name and bool(self.served_name)


def in_effect(record: Optional[Record]) -> InEffect:
    rec = record or Record()
    version = rec.production_version if rec.production else (BASE_VERSION if rec.served_name else "")
    return InEffect(rec.production, version, rec.served_name, rec.promoted_at, rec.previous)


def is_production(record: Optional[Record], name: str) -> bool:
    """The record names this version as in effect (whether it may be served: see serves)."""
    return bool(name) and in_effect(record).name == name


def serves(record: Optional[Record], name: str, stage: str) -> bool:
    """The operator serves a version only when its own record names it AND the object's spec.stage,
    admitted through the promoter policy, still says production: neither alone is enough."""
    return is_production(record, name) and stage == "production"


def describe(record: Optional[Record]) -> str:
    """What serves now, in words: 'v2 (bot-v2)', 'the base model (<name>)' or 'no version'."""
    now = in_effect(record)
    if now.name:
        return f"{now.version} ({now.name})"
    return f"the base model ({now.served_name})" if now.on_base else "no version"


def record_of(configmap: Optional[dict]) -> Record:
    return Record.from_configmap(configmap)
