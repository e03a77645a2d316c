"""The snapshot one pass decides from: the FineTuneJob with its CRD defaults applied once, and
what observe read of its children. Frozen: decide reads it and never writes to it."""
from __future__ import annotations

import dataclasses
from typing import Optional

from finetune_api import finetunejob_crd
from finetune_api.structural import apply_defaults

from ..builders.settings import OperatorSettings

_SPEC_SCHEMA = finetunejob_crd.spec()


def defaulted_spec(spec: dict) -> dict:
    return apply_defaults(spec, _SPEC_SCHEMA)


def attempt_of(status: dict) -> int:
    """The current attempt: the one place status.attempts is read (absent: the first)."""
    return int(status.get("attempts") or 1)


def caps_enabled(settings: OperatorSettings) -> bool:
    return settings.max_running_jobs_per_namespace is not None or settings.max_gpus_per_namespace is not None


@dataclasses.dataclass(frozen=True)
class Preflight:
    """What only the cluster can answer, read before the validate pod exists."""
    credentials_problem: Optional[tuple[str, str]] = None  # (reason, message)
    nodes: Optional[tuple] = None                            # None: the operator may not list nodes


@dataclasses.dataclass(frozen=True)
class Capacity:
    """The namespace's trainer Jobs holding capacity and the jobs waiting ahead, for quota.decide."""
    holding_jobs: int
    holding_gpus: int
    waiting: tuple  # quota.Demand


@dataclasses.dataclass(frozen=True)
class Verified:
    """The success manifest read back from S3 (files checked), or why it could not be."""
    adapter_uri: str = ""
    digest: str = ""
    manifest: Optional[dict] = None
    files: int = 0
    error: Optional[tuple[str, str]] = None  # (reason, message); reason S3Unavailable is retried


@dataclasses.dataclass(frozen=True)
class Snapshot:
    obj: dict                        # the object as read (builders render children from it)
    spec: dict                       # spec with the CRD defaults applied
    status: dict
    settings: OperatorSettings
    # <job>-config, read only when a child that mounts it is about to be created (None: not there).
    config_map: Optional[dict] = None
    # Children found by their fixed names that are not this job's (children.Conflict): never used.
    conflicts: tuple = ()
    validate_pod: Optional[dict] = None
    job: Optional[dict] = None       # the current attempt's trainer Job
    pods: tuple = ()                 # that Job's pods
    progress: Optional[dict] = None  # the lead pod's /progress document, while running
    preflight: Optional[Preflight] = None
    capacity: Optional[Capacity] = None  # None: caps off, or not needed this pass
    verified: Optional[Verified] = None
    registered_model_version_exists: bool = False

    @property
    def meta(self) -> dict:
        return self.obj["metadata"]

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 1)

    @property
    def life(self) -> dict:
        return self.spec["lifecycle"]

    @property
    def attempt(self) -> int:
        return attempt_of(self.status)

    @property
    def conditions(self) -> list:
        return list(self.status.get("conditions") or [])
