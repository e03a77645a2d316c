"""Pure: observed children -> what a FineTuneJob's status should say.

Condition types and reasons are constants so handlers, tests and docs name them the same way.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from finetune_api import termination

TERMINAL = ("Succeeded", "Failed", "Cancelled")
# Condition types.
VALIDATED = "Validated"      # the dataset passed the validate-only pod
RUNNING = "Running"          # a trainer attempt is running
SUCCEEDED = "Succeeded"      # summary condition: the adapter is written (True) or the job failed (False)
# Reasons (CamelCase, stable). The trainer's own reasons (DatasetInvalid, InvalidConfig, ...) pass through.
REASON_VALIDATING = "Validating"       # the validate-only pod is running
REASON_DATASET_VALID = "DatasetValid"  # validation passed
REASON_TRAINING = "Training"           # an attempt is running
REASON_TRAINED = "Trained"             # the adapter and manifest are written
REASON_RETRYING = "Retrying"           # a retryable failure; the next attempt resumes from a checkpoint
REASON_CANCELLED = "Cancelled"         # spec.lifecycle.cancel was set
REASON_OUT_OF_MEMORY = termination.REASONS[termination.ExitCode.OUT_OF_MEMORY]  # CUDA OOM, or the container OOM-killed
# The validate pod's data-safety gate refused the dataset (spec.dataSafety, a Fail action): permanent.
REASON_DATASET_UNSAFE = termination.REASONS[termination.ExitCode.DATASET_UNSAFE]
REASON_RETRIES_EXHAUSTED = "RetryLimitExceeded"  # retryable failures beyond spec.lifecycle.retryLimit


@dataclasses.dataclass(frozen=True)
class PodOutcome:
    state: str                     # pending | running | succeeded | failed
    exit_code: Optional[int] = None
    result: Optional[dict] = None  # the trainer's JSON termination message
    message: str = ""

    @property
    def reason(self) -> str:
        return (self.result or {}).get("reason") or ("PodFailed" if self.state == "failed" else "")

    @property
    def retryable(self) -> bool:
        if self.result is not None:
            return bool(self.result.get("retryable"))
        return self.exit_code in (None, 137, 143)  # killed without saying why: evicted, preempted, OOM-killed


def pod_outcome(pod: Optional[dict]) -> PodOutcome:
    if not pod:
        return PodOutcome("pending")
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    terminated = next((cs["state"]["terminated"] for cs in status.get("containerStatuses") or []
                       if (cs.get("state") or {}).get("terminated")), None)
    result, message = None, status.get("message", "")
    if terminated:
        message = terminated.get("message") or message
        parsed = termination.parse(message)
        result = parsed.to_doc() if parsed else None
    if phase == "Succeeded":
        return PodOutcome("succeeded", 0, result, message)
    if phase == "Failed":
        if result is None and terminated and terminated.get("reason") == "OOMKilled":
            result = {"reason": REASON_OUT_OF_MEMORY, "retryable": True,
                      "message": "the trainer container was OOM-killed: it went over its memory limit"}
        return PodOutcome("failed", terminated.get("exitCode") if terminated else None, result,
                          (result or {}).get("message") or message or status.get("reason", ""))
    return PodOutcome("running" if phase == "Running" else "pending")


def job_state(job: Optional[dict], pods: Optional[list] = None) -> str:
    """pending | starting | running | finishing | succeeded | failed | suspended: one attempt's
    state, from its batch/v1 Job and (when given) its pods. quota.job_holds_capacity reads it too.

    finishing: a pod has ended but the Job controller has not written Complete or Failed yet. It
    first moves the pod to status.uncountedTerminatedPods (active drops to 0 before succeeded
    counts it), then marks SuccessCriteriaMet / FailureTarget, and only then Complete / Failed;
    a Job read a moment before its pods can still say active 1 for a pod already terminated.
    None of these is "waiting for pods": trainer Jobs have backoffLimit 0, so once a pod has
    ended nothing new starts. starting: pods exist or are wanted, none is running yet."""
    if not job:
        return "pending"
    status = job.get("status") or {}
    conds = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conds:
        return "succeeded"
    if "Failed" in conds:
        return "failed"
    uncounted = status.get("uncountedTerminatedPods") or {}
    pod_phases = {(p.get("status") or {}).get("phase") for p in pods or []}
    if ({"SuccessCriteriaMet", "FailureTarget"} & conds or uncounted.get("succeeded") or uncounted.get("failed")
            or status.get("succeeded") or status.get("failed") or {"Succeeded", "Failed"} & pod_phases):
        return "finishing"
    if "Suspended" in conds or (job.get("spec") or {}).get("suspend"):
        return "suspended"
    if "Running" in pod_phases:
        return "running"
    if status.get("active") or pods:
        return "running" if pods is None and status.get("active") else "starting"
    return "pending"


def job_failure_reason(job: dict) -> str:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return c.get("reason") or "JobFailed"
    return "JobFailed"


def condition(previous: list, ctype: str, ok: bool, reason: str, message: str, generation: int, now: str) -> list:
    """The conditions list with ctype set; lastTransitionTime moves only when the status changes."""
    status = "True" if ok else "False"
    old = next((c for c in previous or [] if c["type"] == ctype), None)
    new = {"type": ctype, "status": status, "reason": reason, "message": message[:32000],
           "observedGeneration": generation,
           "lastTransitionTime": old["lastTransitionTime"] if old and old["status"] == status else now}
    if old is None:
        return list(previous or []) + [new]
    return [new if c["type"] == ctype else c for c in previous]


def condition_status(conditions: list, ctype: str) -> Optional[str]:
    return next((c["status"] for c in conditions or [] if c["type"] == ctype), None)


def out_of_memory_split(policy: Optional[dict], current: int, batch_size: int) -> Optional[int]:
    """Micro-batch split for the relaunch after an out-of-memory failure under
    spec.lifecycle.onOutOfMemory, or None when the job should fail instead."""
    policy = policy or {}
    if policy.get("action", "Fail") != "SplitMicroBatch":
        return None
    cap = min(int(policy.get("maxSplit", 8)), max(1, batch_size))
    if current >= cap:
        return None
    return min(cap, current * 2)


def retry_delay(attempt: int, base: float = 5.0, cap: float = 300.0) -> float:
    """Exponential backoff before attempt N+1 (attempt 1 failed -> 5 s, 2 -> 10 s, ...)."""
    return min(cap, base * 2 ** (attempt - 1))


# --- time-based lifecycle (pure; times are epoch seconds) -------------------------------------
REASON_SUSPENDED = "Suspended"           # spec.lifecycle.suspend is true
REASON_RESUMED = "Resumed"
REASON_DEADLINE = "DeadlineExceeded"     # spec.lifecycle.activeDeadlineSeconds passed
REASON_WAITING_FOR_CAPACITY = "WaitingForCapacity"  # per-namespace caps are full
REASON_CLEANED_UP = "ChildrenDeleted"    # spec.lifecycle.ttlSecondsAfterFinished passed
REASON_CHILD_NAME_CONFLICT = "ChildNameConflict"  # a child's fixed name is taken by an object not the job's
SUSPENDED = "Suspended"                  # condition type


def parse_time(value) -> Optional[float]:
    import datetime
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def deadline_left(spec: dict, start_time: Optional[str], now: float) -> Optional[float]:
    """Seconds of spec.lifecycle.activeDeadlineSeconds left (counted from the first start); None: no deadline."""
    limit = (spec.get("lifecycle") or {}).get("activeDeadlineSeconds")
    if not limit:
        return None
    started = parse_time(start_time)
    return float(limit) if started is None else limit - (now - started)


def ttl_left(spec: dict, completion_time: Optional[str], now: float) -> Optional[float]:
    """Seconds until the children of a finished job are deleted; None: never."""
    ttl = (spec.get("lifecycle") or {}).get("ttlSecondsAfterFinished")
    done = parse_time(completion_time)
    if ttl is None or done is None:
        return None
    return ttl - (now - done)


def gpu_seconds_since(pods: list, gpus_per_pod: int, since: Optional[float], now: float) -> float:
    """GPU-seconds the pods used between `since` (None: since each started) and now."""
    total = 0.0
    for pod in pods:
        st = pod.get("status") or {}
        start = parse_time(st.get("startTime"))
        if start is None:
            continue
        end = now
        for cs in st.get("containerStatuses") or []:
            finished = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            if finished is not None:
                end = min(end, finished)
        begin = max(start, since) if since is not None else start
        if end > begin:
            total += (end - begin) * gpus_per_pod
    return total


def append_history(history: list, progress: dict, limit: int = 200) -> list:
    """status.progress.history: one point per step seen, thinned to `limit` points (every other old point)."""
    step = progress.get("step")
    if step is None or (history and history[-1].get("step") == step):
        return history
    point = {"step": step}
    for key in ("trainLoss", "evalLoss"):
        if progress.get(key) is not None:
            point[key] = progress[key]
    out = list(history) + [point]
    if len(out) > limit:
        out = out[:-1][::2] + [out[-1]]
    return out
