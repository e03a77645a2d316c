"""Pure: may a FineTuneJob start its trainer now, under the per-namespace caps?

Capacity is held by trainer Jobs that are neither finished nor suspended. Jobs waiting for
capacity start strictly in creation order (name breaks ties): a big job at the head of the
line is not overtaken by smaller ones behind it, so it cannot starve.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional


@dataclasses.dataclass(frozen=True)
class Demand:
    key: tuple          # (creationTimestamp, name): the queue order
    gpus: int           # nodes x gpusPerNode


@dataclasses.dataclass(frozen=True)
class Decision:
    admitted: bool
    message: str = ""


def demand_of(ftj: dict) -> Demand:
    r = ftj["spec"].get("resources") or {}
    return Demand((ftj["metadata"].get("creationTimestamp", ""), ftj["metadata"]["name"]),
                  int(r.get("nodes", 1)) * int(r.get("gpusPerNode", 1)))


def decide(me: Demand, waiting: Iterable[Demand], running_jobs: int, running_gpus: int,
           max_jobs: Optional[int], max_gpus: Optional[int]) -> Decision:
    """waiting: every job of the namespace waiting to start (me included or not)."""
    if max_jobs is None and max_gpus is None:
        return Decision(True)
    jobs, gpus = running_jobs, running_gpus
    for ahead in sorted(w for w in waiting if w.key < me.key):
        # Each job ahead of me would start first; if it does not fit, it blocks the line.
        if not _fits(ahead, jobs, gpus, max_jobs, max_gpus):
            return Decision(False, f"waiting behind {ahead.key[1]} for capacity ({_usage(jobs, gpus, max_jobs, max_gpus)})")
        jobs, gpus = jobs + 1, gpus + ahead.gpus
    if _fits(me, jobs, gpus, max_jobs, max_gpus):
        return Decision(True)
    if max_gpus is not None and me.gpus > max_gpus:
        return Decision(False, f"needs {me.gpus} GPUs but the namespace may use at most {max_gpus} at once")
    return Decision(False, f"waiting for capacity ({_usage(jobs, gpus, max_jobs, max_gpus)})")


def _fits(d: Demand, jobs: int, gpus: int, max_jobs, max_gpus) -> bool:
    return (max_jobs is None or jobs + 1 <= max_jobs) and (max_gpus is None or gpus + d.gpus <= max_gpus)


def _usage(jobs, gpus, max_jobs, max_gpus) -> str:
    parts = []
    if max_jobs is not None:
        parts.append(f"{jobs}/{max_jobs} jobs running")
    if max_gpus is not None:
        parts.append(f"{gpus}/{max_gpus} GPUs in use")
    return ", ".join(parts)


def job_holds_capacity(job: dict) -> bool:
    """A trainer Job counts against the caps unless it finished or is suspended."""
    from .status import job_state
    return job_state(job) not in ("succeeded", "failed", "suspended")


def job_gpus(job: dict) -> int:
    spec = job.get("spec") or {}
    per_pod = 0
    for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
        per_pod += int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
    return per_pod * int(spec.get("parallelism") or 1)
