"""Pure: the attempt's part of a decision: capacity, launch, Kueue, suspend/resume, running and
progress, and the outcome (success, retry from the last checkpoint, permanent failure)."""
from __future__ import annotations

from typing import Optional

from finetune_api import progress as progress_doc, resume

from .. import quota, status as st
from ..builders import trainer_config, trainer_job
from .draft import CREATE, SET_JOB_SUSPEND, Draft, config_for_pods, fail
from .snapshot import caps_enabled
from .success import succeed


def lead_pod(pods) -> Optional[dict]:
    """Index 0 of an Indexed Job (the only pod of a single-node one): it reports progress and the result."""
    return min(pods, key=lambda p: int((p["metadata"].get("annotations") or {}).get(
        "batch.kubernetes.io/job-completion-index", "0")), default=None)


def train(d: Draft) -> Optional[float]:
    s = d.s
    not_before = s.status.get("nextAttemptAfter")
    if not_before and d.now < not_before:
        return not_before - d.now
    if s.job is None:
        return _suspend(d, None) if s.life["suspend"] else _launch_or_wait(d)
    d.set(trainerJob=s.job["metadata"]["name"], attempts=s.attempt)
    state = st.job_state(s.job, list(s.pods))
    lead = lead_pod(s.pods)
    if state in ("succeeded", "failed") and lead is not None and not lead["metadata"].get("deletionTimestamp") \
            and st.pod_outcome(lead).state not in ("succeeded", "failed"):
        return 1.0  # the pods were read older than the Job: their outcome is not visible yet
    if state == "succeeded":
        return succeed(d, st.pod_outcome(lead))
    if state == "failed":
        return _attempt_failed(d, st.pod_outcome(lead), st.job_failure_reason(s.job))
    if state == "finishing":  # keep the phase until the Job says how it ended
        return d.with_deadline(1.0)
    if s.life["suspend"]:
        return _suspend(d, s.job)
    if state == "suspended" and not _kueue_managed(s):
        return _resume(d)
    return _attempt_running(d, state)


def _kueue_managed(s) -> bool:
    return bool(s.spec["resources"].get("queueName"))


def _admitted(d: Draft) -> bool:
    """The namespace's caps let this attempt start (Queued / WaitingForCapacity otherwise)."""
    s = d.s
    if not caps_enabled(s.settings):
        return True
    cap = s.capacity
    if cap is None:  # observe reads it whenever the caps are on and a start is possible
        raise ValueError("capacity was not observed although the namespace caps are on")
    decision = quota.decide(quota.demand_of(s.obj), cap.waiting, cap.holding_jobs, cap.holding_gpus,
                            s.settings.max_running_jobs_per_namespace, s.settings.max_gpus_per_namespace)
    if not decision.admitted:
        d.condition(st.RUNNING, False, st.REASON_WAITING_FOR_CAPACITY, decision.message)
    return decision.admitted


def _launch_or_wait(d: Draft) -> Optional[float]:
    s, attempt = d.s, d.s.attempt
    if not _admitted(d):
        return 5.0
    digest = config_for_pods(d)
    if digest is None:
        return 1.0
    if s.spec["resources"]["nodes"] > 1:
        d.act(CREATE, body=trainer_job.headless_service(s.obj, attempt, s.settings))
    left = d.deadline_left()
    body = trainer_job.trainer_job(s.obj, attempt, s.settings, deadline_left=int(left) if left is not None else None,
                                   config_digest=digest)
    body = trainer_config.with_resume(body, d.status)  # from the checkpoint this job recorded, if any
    d.act(CREATE, body=body)
    if attempt == 1:
        d.event("Normal", "TrainerLaunched", f"created Job {body['metadata']['name']}")
    else:
        d.event("Normal", "TrainerRelaunched",
                f"created Job {body['metadata']['name']} (attempt {attempt}, resumes from the last checkpoint)")
    d.set(trainerJob=body["metadata"]["name"], attempts=attempt)
    _not_suspended(d)
    d.condition(st.RUNNING, False, st.REASON_TRAINING, _waiting_message(d))
    return d.with_deadline(None)


def _not_suspended(d: Draft) -> None:
    if d.cond(st.SUSPENDED) == "True":
        d.condition(st.SUSPENDED, False, st.REASON_RESUMED, "not suspended")


def _waiting_message(d: Draft) -> str:
    return f"attempt {d.s.attempt} of {1 + d.s.life['retryLimit']} is waiting for its pods"


def _attempt_running(d: Draft, state: str) -> Optional[float]:
    s = d.s
    running = state == "running"
    # A running attempt never goes back to waiting for its pods (backoffLimit 0: nothing new
    # starts); seeing it so means a read that lags the last pass's.
    if not running and state == "starting" and d.cond(st.RUNNING) == "True" and \
            s.status.get("trainerJob") == s.job["metadata"]["name"]:
        running = True
    _not_suspended(d)
    if running:
        if not d.status.get("startTime"):
            d.set(startTime=d.stamp)
        d.condition(st.RUNNING, True, st.REASON_TRAINING,
                    f"attempt {s.attempt} of {1 + s.life['retryLimit']} is running")
        _progress(d)
        return d.with_deadline(s.settings.progress_interval_seconds)
    if state == "suspended":
        d.condition(st.RUNNING, False, "WaitingForKueue", f"attempt {s.attempt} waits for Kueue to admit it "
                                                          f"(queue {s.spec['resources'].get('queueName')})")
    else:
        d.condition(st.RUNNING, False, st.REASON_TRAINING, _waiting_message(d))
    return d.with_deadline(None)


def _progress(d: Draft) -> None:
    doc = d.s.progress
    if not doc:
        return
    if doc.get("totalSteps"):
        progress = progress_doc.to_status(doc)
        progress["history"] = st.append_history((d.status.get("progress") or {}).get("history") or [], progress)
        d.set(progress=progress)
    if doc.get("checkpoints"):
        d.set(checkpoints=resume.entries(doc["checkpoints"]))


# --- suspend / resume --------------------------------------------------------------------------
def _suspend(d: Draft, job: Optional[dict]) -> Optional[float]:
    if job is not None and not (job.get("spec") or {}).get("suspend"):
        # The Job controller deletes the pods; SIGTERM makes the trainer save a checkpoint
        # within terminationGracePeriodSeconds, and resuming continues from it.
        d.act(SET_JOB_SUSPEND, name=job["metadata"]["name"], value=True)
    d.condition(st.RUNNING, False, st.REASON_SUSPENDED, "suspended")
    d.condition(st.SUSPENDED, True, st.REASON_SUSPENDED,
                "suspended by spec.lifecycle.suspend: the trainer checkpointed and stopped; set it to false to "
                "resume from the checkpoint")
    return None


def _resume(d: Draft) -> Optional[float]:
    if not _admitted(d):
        return 5.0
    d.act(SET_JOB_SUSPEND, name=d.s.job["metadata"]["name"], value=False)
    d.condition(st.SUSPENDED, False, st.REASON_RESUMED, "spec.lifecycle.suspend is false")
    d.condition(st.RUNNING, False, st.REASON_RESUMED, "resumed: the trainer restarts from the last checkpoint")
    return None


# --- failure -----------------------------------------------------------------------------------
def _failure(d: Draft, outcome: st.PodOutcome, job_reason: str) -> tuple[str, str, bool, Optional[int]]:
    """(reason, message, retryable, micro-batch split for the next attempt)."""
    life = d.s.life
    reason = outcome.reason or job_reason
    message = outcome.message or f"the trainer Job failed ({job_reason})"
    if job_reason == "DeadlineExceeded":
        reason, message = st.REASON_DEADLINE, f"spec.lifecycle.activeDeadlineSeconds ({life.get('activeDeadlineSeconds')}s) passed"
    retryable, split = outcome.retryable and reason != st.REASON_DEADLINE, None
    if reason == st.REASON_OUT_OF_MEMORY:
        # The same batch would run out of memory again: relaunch only with a smaller micro-batch.
        current = int(d.status.get("microBatchSplit") or 1)
        split = st.out_of_memory_split(life["onOutOfMemory"], current, int(d.s.spec["training"]["batchSize"]))
        retryable = split is not None
        if split is None:
            message += (" (spec.lifecycle.onOutOfMemory.action is Fail)" if life["onOutOfMemory"]["action"] == "Fail"
                        else f" (micro-batches were already split in {current}, the most allowed)")
    return reason, message, retryable, split


def _attempt_failed(d: Draft, outcome: st.PodOutcome, job_reason: str) -> Optional[float]:
    attempt, retry_limit = d.s.attempt, d.s.life["retryLimit"]
    reason, message, retryable, split = _failure(d, outcome, job_reason)
    failure = {"reason": reason, "message": message[:4000], "retryable": retryable and attempt <= retry_limit}
    if {k: (d.status.get("lastFailure") or {}).get(k) for k in failure} != failure:
        d.set(lastFailure={**failure, "time": d.stamp})
    stopped_at = (outcome.result or {}).get("checkpoint")  # saved as it stopped, maybe after the last poll
    if isinstance(stopped_at, dict):
        d.set(checkpoints=resume.merge(d.status.get("checkpoints"), stopped_at))
    if not retryable:
        return fail(d, reason, message)
    if attempt > retry_limit:
        return fail(d, st.REASON_RETRIES_EXHAUSTED, f"{attempt} attempts failed; last: {reason}: {message}")
    delay = st.retry_delay(attempt)
    d.set(attempts=attempt + 1, nextAttemptAfter=int(d.now + delay))
    if split is not None:
        d.set(microBatchSplit=split)
        d.event("Normal", "MicroBatchSplit", f"out of memory: attempt {attempt + 1} splits each micro-batch "
                                             f"in {split} (same steps, same gradients, less memory)")
    d.condition(st.RUNNING, False, st.REASON_RETRYING,
                f"attempt {attempt} failed ({reason}); attempt {attempt + 1} resumes from the last checkpoint "
                f"in {delay:.0f}s")
    d.wake_waiting()
    return delay
