"""The trainer's /progress document and what the operator makes of it (status.progress).

The trainer (rank 0) serves the document as JSON at http://<pod IP>:<metricsPort>/progress; the
operator polls it while the job runs and copies a summary into FineTuneJob.status.progress.

Document keys (camelCase; absent until known):
  phase             starting | validating | loading | training | evaluating | saving | done
  step, totalSteps  optimiser steps done / planned
  epoch             epochs done (fractional)
  trainLoss         mean training loss over the last logging window
  evalLoss          latest validation loss
  learningRate      current learning rate
  tokensPerSecond   real (non-padding) tokens per second, all processes
  samplesPerSecond  examples per second, all processes
  etaSeconds        estimated seconds until training ends
  gpuMemoryBytes    peak CUDA memory allocated by rank 0
  resumedFrom       the checkpoint this attempt resumed from
  checkpoints       [{step, uri, digest, evalLoss, savedAt}] saved and still kept; digest is the
                    checkpoint's folder digest (finetune_api.resume), taken as it was written
  updatedAt         RFC 3339 time of the last update
"""
from __future__ import annotations

PATH = "/progress"  # on the trainer's metrics port
PHASES = ("starting", "validating", "loading", "training", "evaluating", "saving", "done")
KEYS = frozenset({"phase", "step", "totalSteps", "epoch", "trainLoss", "evalLoss", "learningRate",
                  "tokensPerSecond", "samplesPerSecond", "etaSeconds", "gpuMemoryBytes", "resumedFrom",
                  "checkpoints", "updatedAt"})
# The document keys copied as they are into status.progress.
STATUS_KEYS = ("epoch", "trainLoss", "evalLoss", "tokensPerSecond", "etaSeconds", "updatedAt")


def initial() -> dict:
    """The document before the first update."""
    return {"phase": "starting", "step": 0, "totalSteps": 0, "checkpoints": []}


def unknown_keys(values: dict) -> list:
    """Keys an update would add that the contract does not define (a typo on one side)."""
    return sorted(set(values) - KEYS)


def to_status(doc: dict) -> dict:
    """The trainer's /progress document -> FineTuneJob status.progress."""
    step, total = int(doc.get("step") or 0), int(doc.get("totalSteps") or 0)
    out = {"step": step, "totalSteps": total, "display": f"{step}/{total}" if total else str(step),
           "percent": int(100 * step / total) if total else 0}
    for key in STATUS_KEYS:
        if doc.get(key) is not None:
            out[key] = doc[key]
    if "etaSeconds" in out:
        out["etaSeconds"] = int(out["etaSeconds"])
    return out
