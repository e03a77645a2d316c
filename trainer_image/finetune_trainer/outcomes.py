"""Typed outcomes of a trainer run: exit codes, reasons, and the termination message.

The operator reads the exit code and the JSON termination message from pod status and decides
whether to retry: only the codes in RETRYABLE are worth relaunching (from the last checkpoint).

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
"""
from __future__ import annotations

import enum
import json
from pathlib import Path

MAX_TERMINATION_MESSAGE = 4096


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


REASONS = {
    ExitCode.SUCCEEDED: "Succeeded", ExitCode.TRAINER_ERROR: "TrainerError",
    ExitCode.INVALID_CONFIG: "InvalidConfig", ExitCode.DATASET_INVALID: "DatasetInvalid",
    ExitCode.S3_UNAVAILABLE: "S3Unavailable", ExitCode.OUT_OF_MEMORY: "OutOfMemory",
    ExitCode.DIVERGED: "Diverged", ExitCode.PREEMPTED: "Preempted",
    ExitCode.UNSUPPORTED_HARDWARE: "UnsupportedHardware", ExitCode.BASE_MODEL_INVALID: "BaseModelInvalid",
    ExitCode.ACCESS_DENIED: "AccessDenied",
}
RETRYABLE = frozenset({ExitCode.TRAINER_ERROR, ExitCode.S3_UNAVAILABLE, ExitCode.OUT_OF_MEMORY, ExitCode.PREEMPTED})


class TrainerFailure(Exception):
    """A failure with a typed exit code; the message is for the user (it ends up in the job's status)."""

    def __init__(self, code: ExitCode, message: str, **details):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    @property
    def reason(self) -> str:
        return REASONS[self.code]


def termination_message(code: ExitCode, message: str, **fields) -> str:
    """Compact JSON that fits Kubernetes' 4 KiB termination-message limit (the message is cut first)."""
    doc = {"reason": REASONS[code], "exitCode": int(code), "retryable": code in RETRYABLE, **fields,
           "message": message}
    text = json.dumps(doc, separators=(",", ":"))
    if len(text) > MAX_TERMINATION_MESSAGE:
        overflow = len(text) - MAX_TERMINATION_MESSAGE + 20
        doc["message"] = message[: max(0, len(message) - overflow)] + " …(truncated)"
        text = json.dumps(doc, separators=(",", ":"))
    return text


def write_termination_message(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError:
        pass  # outside a pod (standalone run) there may be no such file to write
