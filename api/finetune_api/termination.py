"""The trainer's termination message: typed exit codes, reasons, and the JSON the operator reads.

The trainer writes one compact JSON document to its container's termination-message file; the
kubelet copies it into the pod's status (containerStatuses[].state.terminated.message) and the
operator reads it there to decide whether to retry and what to put in status.result.

| code | reason              | retryable | meaning |
|------|---------------------|-----------|---------|
| 0    | Succeeded           |           | adapter and manifest written |
| 1    | TrainerError        | yes       | an unexpected error (a bug or a transient fault) |
| 10   | InvalidConfig       |           | the config/spec cannot work |
| 11   | DatasetInvalid      |           | rows violate the declared format (line numbers in the message) |
| 12   | S3Unavailable       | yes       | S3 unreachable or failing after retries |
| 13   | OutOfMemory         | yes*      | CUDA or host OOM (*relaunched by the operator only under spec.lifecycle.onOutOfMemory: SplitMicroBatch) |
| 14   | Diverged            |           | loss became NaN/inf |
| 15   | Preempted           | yes       | SIGTERM: a checkpoint was saved; resume from it |
| 16   | UnsupportedHardware |           | e.g. QLoRA without CUDA |
| 17   | BaseModelInvalid    |           | weights missing, unreadable, or digest mismatch |
| 18   | AccessDenied        |           | S3 refused the credentials or the bucket |
| 19   | CheckpointMismatch  |           | the checkpoint to resume from is not the one the operator recorded (its digest differs) |
| 20   | ConfigMismatch      |           | the mounted config is not the one the operator wrote (its sha256 differs from the pod's FTO_TRAINER_CONFIG_SHA256) |
| 21   | DatasetChanged      |           | a dataset object's content is not what validation checked (its sha256 or version differs) |
| 22   | DatasetUnsafe       |           | the data-safety gate (spec.dataSafety) found rows a Fail action refuses (counts and line numbers, never values) |

Document: {"reason", "exitCode", "retryable", "message", ...fields}. On success the fields are
adapterUri, manifestUri, adapterDigest (finetune_api.manifest.digest), steps and metrics (or
datasetStats for a validate-only run); on failure optionally stats, step and checkpoint (the
last one this attempt saved: {step, uri, digest}, so a retry resumes from it).
"""
from __future__ import annotations

import dataclasses
import enum
import json
from typing import Optional

MAX_BYTES = 4096  # Kubernetes' limit on a termination message


class ExitCode(enum.IntEnum):
    SUCCEEDED = 0
    TRAINER_ERROR = 1
    INVALID_CONFIG = 10
    DATASET_INVALID = 11
    S3_UNAVAILABLE = 12
    OUT_OF_MEMORY = 13
    DIVERGED = 14
    PREEMPTED = 15
    UNSUPPORTED_HARDWARE = 16
    BASE_MODEL_INVALID = 17
    ACCESS_DENIED = 18
    CHECKPOINT_MISMATCH = 19
    CONFIG_MISMATCH = 20
    DATASET_CHANGED = 21
    DATASET_UNSAFE = 22


REASONS = {
    ExitCode.SUCCEEDED: "Succeeded", ExitCode.TRAINER_ERROR: "TrainerError",
    ExitCode.INVALID_CONFIG: "InvalidConfig", ExitCode.DATASET_INVALID: "DatasetInvalid",
    ExitCode.S3_UNAVAILABLE: "S3Unavailable", ExitCode.OUT_OF_MEMORY: "OutOfMemory",
    ExitCode.DIVERGED: "Diverged", ExitCode.PREEMPTED: "Preempted",
    ExitCode.UNSUPPORTED_HARDWARE: "UnsupportedHardware", ExitCode.BASE_MODEL_INVALID: "BaseModelInvalid",
    ExitCode.ACCESS_DENIED: "AccessDenied",
    ExitCode.CHECKPOINT_MISMATCH: "CheckpointMismatch",
    ExitCode.CONFIG_MISMATCH: "ConfigMismatch",
    ExitCode.DATASET_CHANGED: "DatasetChanged", ExitCode.DATASET_UNSAFE: "DatasetUnsafe",
}
RETRYABLE = frozenset({ExitCode.TRAINER_ERROR, ExitCode.S3_UNAVAILABLE, ExitCode.OUT_OF_MEMORY, ExitCode.PREEMPTED})


@dataclasses.dataclass(frozen=True)
class TerminationMessage:
    reason: str
    retryable: bool
    message: str = ""
    exit_code: Optional[int] = None
    fields: dict = dataclasses.field(default_factory=dict)  # everything else (adapterUri, steps, stats, ...)

    def to_doc(self) -> dict:
        doc = {"reason": self.reason, "retryable": self.retryable, **self.fields, "message": self.message}
        if self.exit_code is not None:
            doc["exitCode"] = self.exit_code
        return doc


def encode(code: ExitCode, message: str, **fields) -> str:
    """Compact JSON within MAX_BYTES (the message is cut first)."""
    doc = {"reason": REASONS[code], "exitCode": int(code), "retryable": code in RETRYABLE, **fields,
           "message": message}
    text = json.dumps(doc, separators=(",", ":"))  # ASCII (escaped), so len() counts bytes
    keep = len(message)
    while len(text) > MAX_BYTES and keep > 0:
        keep = max(0, keep - (len(text) - MAX_BYTES) - 20)
        doc["message"] = message[:keep] + " …(truncated)"
        text = json.dumps(doc, separators=(",", ":"))
    return text


def parse(text: Optional[str]) -> Optional[TerminationMessage]:
    """The message a pod's container left, or None when it is not one of ours (empty, not JSON, no reason)."""
    try:
        doc = json.loads(text or "")
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict) or not doc.get("reason"):
        return None
    fields = {k: v for k, v in doc.items() if k not in ("reason", "retryable", "message", "exitCode")}
    exit_code = doc.get("exitCode")
    return TerminationMessage(reason=str(doc["reason"]), retryable=bool(doc.get("retryable")),
                              message=str(doc.get("message") or ""),
                              exit_code=int(exit_code) if isinstance(exit_code, int) else None, fields=fields)
