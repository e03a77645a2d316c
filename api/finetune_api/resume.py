"""Which checkpoint a relaunched trainer may resume from: the operator's record, not the bucket's.

The output prefix can be written by whoever holds S3 write access to it, which is more people
than may decide what the trainer loads. So the trainer reports each checkpoint's digest as it
writes it (the /progress document's checkpoints[].digest, and the termination message's
`checkpoint` field when an attempt stops), the operator records them in
FineTuneJob.status.checkpoints (which tenants cannot write), and a relaunched attempt gets the
newest recorded one as its resume pointer in the env var RESUME_ENV:

    {"step": 30, "uri": "s3://bucket/out/checkpoints/step-00000030", "digest": "sha256:<hex>"}

The trainer then loads exactly that checkpoint, and only if the digest of the files it reads
back (finetune_api.digests.entries_digest over trainable.safetensors, training_state.pt and
state.json) is the recorded one; otherwise it exits CheckpointMismatch. With the policy
RECORDED and no pointer it starts from step 0, whatever the prefix holds.
"""
from __future__ import annotations

import json
import re
from typing import Optional

RESUME_ENV = "FTO_RESUME_CHECKPOINT"
RECORDED = "recorded"  # resume only from the pointer the operator passes (the operator's configs)
LATEST = "latest"      # resume from the newest checkpoint of this job found in the prefix (runs by hand)
POLICIES = (RECORDED, LATEST)
FILES = ("trainable.safetensors", "training_state.pt", "state.json")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class PointerError(ValueError):
    pass


def checkpoint_uri(output_uri: str, step: int) -> str:
    """Where the trainer writes the checkpoint of `step`: <output>/checkpoints/step-NNNNNNNN."""
    return f"{output_uri.rstrip('/')}/checkpoints/step-{step:08d}"


def is_digest(value) -> bool:
    return isinstance(value, str) and bool(_DIGEST.match(value))


def pointer(checkpoints) -> Optional[dict]:
    """The newest recorded checkpoint that carries a digest, as {step, uri, digest}; None if none."""
    usable = [c for c in checkpoints or [] if isinstance(c, dict) and is_digest(c.get("digest"))
              and isinstance(c.get("step"), int) and isinstance(c.get("uri"), str)]
    if not usable:
        return None
    newest = max(usable, key=lambda c: c["step"])
    return {"step": newest["step"], "uri": newest["uri"], "digest": newest["digest"]}


def entries(checkpoints) -> list:
    """A progress document's checkpoints as status.checkpoints entries (the fields the schema has;
    a digest only when it is one)."""
    out = []
    for c in checkpoints or []:
        if not (isinstance(c, dict) and isinstance(c.get("step"), int) and isinstance(c.get("uri"), str)):
            continue
        entry = {k: c[k] for k in ("step", "uri", "evalLoss", "savedAt") if c.get(k) is not None}
        if is_digest(c.get("digest")):
            entry["digest"] = c["digest"]
        out.append(entry)
    return out


def merge(checkpoints, entry: Optional[dict]) -> list:
    """status.checkpoints with `entry` (the one an attempt reported as it stopped) added or replaced."""
    added = entries([entry])
    if not added or "digest" not in added[0]:
        return list(checkpoints or [])
    kept = [c for c in checkpoints or [] if c.get("uri") != added[0]["uri"]]
    return sorted(kept + added, key=lambda c: c.get("step", 0))


def encode(ptr: dict) -> str:
    return json.dumps({"step": ptr["step"], "uri": ptr["uri"], "digest": ptr["digest"]}, sort_keys=True)


def parse(value, output_uri: str) -> dict:
    """A pointer from the env or the config; it must name a checkpoint under output_uri/checkpoints/."""
    try:
        doc = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise PointerError(f"{RESUME_ENV} is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("step"), int) or not is_digest(doc.get("digest")) \
            or not isinstance(doc.get("uri"), str):
        raise PointerError(f"{RESUME_ENV} needs step (an integer), uri and digest (sha256:<64 hex>)")
    expected = checkpoint_uri(output_uri, doc["step"])
    if doc["uri"].rstrip("/") != expected:
        raise PointerError(f"{RESUME_ENV}: checkpoint uri {doc['uri']!r} is not {expected!r} (step {doc['step']} "
                           "under spec.output.uri)")
    return {"step": doc["step"], "uri": expected, "digest": doc["digest"]}
