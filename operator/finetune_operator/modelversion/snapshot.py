"""The world as one pass of the ModelVersion controller saw it (observe.py fills it once per pass), and
the actions and decision that decide.py returns. Plain values: decide never mutates them."""
from __future__ import annotations

import dataclasses
from typing import Optional

from .pods import Pod, PodView
from .record import Contender, Record
from .register import Adapter


@dataclasses.dataclass(frozen=True)
class Registration:
    """What registering found. state: registered (status already has it), unchanged (failed at this
    generation: nothing is looked at again), wait, failed, verified, unavailable (S3 for now)."""
    state: str
    reason: str = ""
    message: str = ""
    verified: object = None          # storage.VerifiedManifest when state is verified
    job_name: str = ""


@dataclasses.dataclass(frozen=True)
class Analysis:
    """One PromQL evaluation (canary analysis or bake-window rollback query), when it was due."""
    query: str
    value: Optional[float] = None
    error: str = ""
    seen: float = 0.0                # time.monotonic() when the answer came (the rollback clock starts)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What act did in this pass, for a second decide on the same observation."""
    failures: tuple = ()             # ((pod name, message), ...)
    stopped: bool = False            # an all-or-nothing action failed, so the actions after it did not run
    seconds: Optional[float] = None  # a measured rollback: breach seen -> every pod flipped back

    def failed(self) -> dict:
        return dict(self.failures)


@dataclasses.dataclass(frozen=True)
class Emit:
    """An event, sent in order with the actions (not sent when an all-or-nothing action before it failed)."""
    type: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Snapshot:
    mv: dict                         # the object, spec with the CRD's defaults applied
    registration: Registration
    record: Optional[Record] = None  # the model's production record (None: no serving target, not asked)
    views: Optional[tuple] = None    # PodView of every ready serving pod (None: no serving target)
    others: Optional[tuple] = None   # the other ModelVersions of the model in the namespace (None: not listed)
    analysis: Optional[Analysis] = None
    outcome: Optional[Outcome] = None
    record_at: str = ""              # "<namespace>/<name>" of the record ConfigMap (status.productionRecord)

    @property
    def meta(self) -> dict:
        return self.mv["metadata"]

    @property
    def spec(self) -> dict:
        return self.mv["spec"]

    @property
    def status(self) -> dict:
        return self.mv.get("status") or {}

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def generation(self) -> int:
        return self.meta.get("generation", 1)


# --- actions (act.py performs them, in order) ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WriteRecord:
    record: Record                   # the whole record as it must be (compare-and-swap on its resourceVersion)


@dataclasses.dataclass(frozen=True)
class Preload:
    pods: tuple                      # Pod
    adapter: Adapter
    version: str
    all_or_nothing: bool = True      # a failure stops the actions after it


@dataclasses.dataclass(frozen=True)
class Flip:
    pods: tuple
    name: str                        # served name (or the base model's) that gets 100 % of the alias
    restore: Optional[tuple] = None  # (Adapter, version): preload it first where the agent says NotLoaded
    all_or_nothing: bool = True
    measure: str = ""                # rollback | canary: time it from the analysis answer (status.rollback.seconds)


@dataclasses.dataclass(frozen=True)
class Weights:
    pods: tuple
    weights: dict
    all_or_nothing: bool = True


@dataclasses.dataclass(frozen=True)
class Unload:
    pods: tuple
    name: str
    all_or_nothing: bool = False


@dataclasses.dataclass(frozen=True)
class Enqueue:
    name: str = ""                   # "" : every ModelVersion of the namespace


@dataclasses.dataclass(frozen=True)
class Count:
    """A metric change: metric is the attribute of finetune_operator.metrics; op inc|set."""
    metric: str
    labels: tuple
    op: str = "inc"
    value: float = 1.0


@dataclasses.dataclass(frozen=True)
class Report:
    """An event whose message needs act's measurement: '<head> on <n>/<total> pods in <s> s'."""
    type: str
    reason: str
    head: str
    total: int


@dataclasses.dataclass
class Decision:
    status: dict                     # status fields this pass decided (None: remove the field)
    actions: list = dataclasses.field(default_factory=list)
    events: list = dataclasses.field(default_factory=list)   # (type, reason, message)
    requeue: Optional[float] = None


AGENT_ACTIONS = (Preload, Flip, Weights, Unload)


def pods_of(views) -> tuple:
    return tuple(v.pod for v in views)


__all__ = ["Analysis", "Contender", "Count", "Decision", "Emit", "Enqueue", "Flip", "Outcome", "Pod", "PodView", "Preload",
           "Record", "Registration", "Report", "Snapshot", "Unload", "WriteRecord", "Weights", "pods_of"]
