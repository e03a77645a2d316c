"""Pure: snapshot + now -> Decision(status, actions, events, requeue). No cluster, network or clock.

The pass, in order: the clean-up finalizer follows the spec; finished jobs only wait for their
TTL; cancel; the deadline; preflight and the validate-only pod; then the attempt: capacity,
launch, Kueue, suspend/resume, running and progress, and its outcome (success with the verified
adapter and the ModelVersion, a retry from the last checkpoint, or a permanent failure).
Conditions are set here; the phase follows from them (phase.derive) when the decision is done.
"""
from __future__ import annotations

import copy
from typing import Optional

from finetune_api import datasets

from .. import cleanup, preflight, quota, status as st
from ..builders import names, scheduling, validate_pod
from . import children, phase as ph, safety
from .draft import CREATE, PATCH_FINALIZERS, STOP_TRAINER, Decision, Draft, after_finish, config_for_pods, fail
from .snapshot import Snapshot
from .train import train

GPU_SECONDS_WRITE_INTERVAL = 60.0


def decide(s: Snapshot, now: float) -> Decision:
    d = Draft(s, now)
    finalizers = cleanup.finalizers_after(s.meta.get("finalizers") or [], s.spec)
    if finalizers is not None:  # the object changes: decide the rest on the fresh one
        d.act(PATCH_FINALIZERS, value=finalizers)
        return Decision(copy.deepcopy(s.status), tuple(d.actions), (), 0.2)
    requeue = _route(d)
    _finish(d)
    return Decision(d.status, tuple(d.actions), tuple(d.events), requeue)


def _route(d: Draft) -> Optional[float]:
    s = d.s
    if s.status.get("phase") in ph.TERMINAL:
        return after_finish(d)
    if s.life["cancel"]:
        return _cancel(d)
    left = d.deadline_left()
    if left is not None and left <= 0:
        return _deadline_exceeded(d)
    if s.conflicts:
        return _child_name_conflict(d)
    if d.cond(st.VALIDATED) != "True":
        return _validation(d)
    return train(d)


def _finish(d: Draft) -> None:
    """Phase from the conditions; never backwards; an Event when it changes; GPU seconds."""
    s, old = d.s, d.s.status
    phase, reason, message = ph.derive(d.status.get("conditions") or [])
    d.set(phase=phase, reason=reason, message=message,
          observedGeneration=max(s.generation, int(old.get("observedGeneration") or 0)))
    if ph.moved_backwards(old, d.status):  # a late or stale read: keep what the last pass saw
        d.set(**{k: old[k] for k in ("phase", "reason", "message", "conditions") if k in old})
    _account_gpu_seconds(d)
    moved = (d.status["phase"], d.status["reason"]) != (old.get("phase"), old.get("reason"))
    if moved and d.status["reason"] != children.REASON:  # _child_name_conflict posts its own Warning
        warn = d.status["phase"] == "Failed" or d.status["reason"] == st.REASON_RETRYING
        d.event("Warning" if warn else "Normal", d.status["reason"], d.status["message"])


def _account_gpu_seconds(d: Draft) -> None:
    """Written at phase changes, or at most every GPU_SECONDS_WRITE_INTERVAL: each status write
    costs the apiserver a write and every watcher an event."""
    s, job = d.s, d.s.job
    if job is None or not s.pods:
        return
    gpus = quota.job_gpus(job) // max(1, int((job.get("spec") or {}).get("parallelism") or 1))
    since = st.parse_time(s.status.get("gpuSecondsUpdatedAt"))
    delta = st.gpu_seconds_since(list(s.pods), gpus, since, d.now) if gpus else 0.0
    changed = d.status.get("phase") != s.status.get("phase")
    if delta <= 0 or not (changed or since is None or d.now - since >= GPU_SECONDS_WRITE_INTERVAL):
        return
    d.set(gpuSeconds=round(float(s.status.get("gpuSeconds") or 0) + delta, 1), gpuSecondsUpdatedAt=d.stamp)


def _cancel(d: Draft) -> Optional[float]:
    d.act(STOP_TRAINER)
    d.condition(st.RUNNING, False, st.REASON_CANCELLED, "cancelled")
    d.condition(st.SUCCEEDED, False, st.REASON_CANCELLED, "cancelled by spec.lifecycle.cancel; checkpoints are kept")
    d.set(completionTime=d.stamp)
    d.wake_waiting()
    return after_finish(d)


def _child_name_conflict(d: Draft) -> Optional[float]:
    """A child's name is taken by an object that is not this job's: report it (a Warning when the
    message is new), create nothing, look again shortly: the job continues once it is gone."""
    s = d.s
    message = children.message(s.conflicts)
    ctype = st.RUNNING if d.cond(st.VALIDATED) == "True" else st.VALIDATED
    old = next((c for c in s.conditions if c.get("type") == ctype), {})
    d.condition(ctype, False, children.REASON, message)
    if (old.get("reason"), old.get("message")) != (children.REASON, message):
        d.event("Warning", children.REASON, message)
    return d.with_deadline(children.RECHECK_SECONDS)


def _deadline_exceeded(d: Draft) -> Optional[float]:
    d.act(STOP_TRAINER)
    return fail(d, st.REASON_DEADLINE, f"spec.lifecycle.activeDeadlineSeconds ({d.s.life['activeDeadlineSeconds']}s) "
                                       f"passed since training started at {d.status.get('startTime')}")


# --- preflight and validation ------------------------------------------------------------------
def _preflight_problem(s: Snapshot) -> Optional[tuple[str, str]]:
    refused = scheduling.refusal(s.obj, s.settings.scheduling_policy,
                                 (names.POD_ANNOTATIONS_ANNOTATION, names.TRAINER_POD_ANNOTATIONS_ANNOTATION))
    if refused:
        return refused
    refused = safety.moderation_refusal(s.spec, s.settings.moderation_endpoints)
    if refused:
        return refused
    p = s.preflight
    if p is None:
        return None
    if p.credentials_problem:
        return p.credentials_problem
    return None if p.nodes is None else preflight.gpu_fit(s.spec, list(p.nodes))


REASON_BAD_SOURCES = "InvalidValidationResult"


def _validated_sources(stats: dict) -> Optional[list]:
    """The validate pod's datasetStats.sources as checked documents ([] when none), or None when malformed."""
    try:
        return datasets.to_docs(datasets.from_docs(stats.get("sources") or []))
    except datasets.DatasetSourcesError:
        return None


def _validation(d: Draft) -> Optional[float]:
    s = d.s
    pod = s.validate_pod
    if pod is None:
        problem = _preflight_problem(s)
        if problem:
            d.condition(st.VALIDATED, False, *problem)
            return fail(d, *problem)
        digest = config_for_pods(d)
        if digest is None:
            return 1.0
        body = validate_pod.validate_pod(s.obj, s.settings, config_digest=digest)
        d.act(CREATE, body=body)
        pod = body
    d.set(validationPod=pod["metadata"]["name"])
    outcome = st.pod_outcome(pod if pod is s.validate_pod else None)
    if outcome.state == "succeeded":
        stats = (outcome.result or {}).get("datasetStats") or {}
        sources = _validated_sources(stats)
        if sources is None:
            return fail(d, REASON_BAD_SOURCES, "the validate pod reported malformed dataset sources "
                                               "(datasetStats.sources); re-run the job")
        d.set(datasetStats={
            "rows": stats.get("rows", 0), "validationRows": stats.get("validation_rows", 0),
            "tokens": stats.get("tokens", 0), "rowsOverMaxSeqLength": stats.get("rows_over_max_seq_length", 0),
            "duplicateRows": stats.get("duplicate_rows", 0), **_safety_stats(stats),
            **({"sources": sources} if sources else {})})
        if sources and (s.status.get("datasetStats") or {}).get("sources") != sources:
            return 1.0  # recorded first: the trainer Job takes FTO_VALIDATED_DATASETS from the written status
        findings = safety.event_message(safety.status_doc(stats.get("safety")))
        if findings:
            d.event("Warning", safety.REASON_FINDINGS, findings)
        d.condition(st.VALIDATED, True, st.REASON_DATASET_VALID,
                    f"{stats.get('rows', '?')} training rows, {stats.get('tokens', '?')} tokens")
        d.event("Normal", st.REASON_DATASET_VALID, f"dataset valid: {stats.get('rows', '?')} rows")
        return train(d)
    if outcome.state == "failed":
        reason = outcome.reason or "ValidationFailed"
        unsafe = _safety_stats((outcome.result or {}).get("stats"))
        if unsafe:  # DatasetUnsafe: the counts and lines behind the refusal
            d.set(datasetStats={**(d.status.get("datasetStats") or {}), **unsafe})
        d.condition(st.VALIDATED, False, reason, outcome.message)
        return fail(d, reason, outcome.message)
    d.condition(st.VALIDATED, False, st.REASON_VALIDATING,
                "the validate-only pod is checking the dataset before any GPU is requested")
    return None  # the pod's watch events bring us back


def _safety_stats(stats) -> dict:
    """{"safety": ...} for status.datasetStats when the validate pod's report has the gate's counts."""
    doc = safety.status_doc(stats.get("safety")) if isinstance(stats, dict) else None
    return {"safety": doc} if doc else {}
