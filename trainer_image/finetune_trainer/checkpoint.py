"""Resumable checkpoints in S3: <output>/checkpoints/step-NNNNNNNN/.

A checkpoint holds the trained parameters, optimiser, scheduler, RNG states and the data
position (epoch, micro-batch). state.json is uploaded last: a checkpoint without it was cut
short and is ignored. A run resumes only from a checkpoint of the same job (namespace/name/uid)
and warns when the training config hash differs. The newest `keep` checkpoints are kept.
"""
from __future__ import annotations

import io
import json
import logging
import pickle
import random
import tempfile
from typing import Optional

from . import s3 as s3mod
from .outcomes import ExitCode, TrainerFailure

log = logging.getLogger("finetune-trainer")
STATE = "state.json"


def _name(step: int) -> str:
    return f"step-{step:08d}"


def rng_state() -> dict:
    import numpy as np
    import torch
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # Plain tensors and numbers only, so load() can refuse anything else (weights_only=True).
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "hasGauss": int(has_gauss), "cachedGaussian": float(cached)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["hasGauss"], n["cachedGaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(s3, output_uri: str, step: int, position: dict, trainable: dict, optimizer_state: dict,
         scheduler_state: dict, meta: dict) -> str:
    """Uploads a checkpoint; returns its URI."""
    import torch
    from safetensors.torch import save_file
    uri = s3mod.join(output_uri, "checkpoints", _name(step))
    bucket, prefix = s3mod.parse_uri(uri)
    with tempfile.TemporaryDirectory() as tmp, s3mod.errors(f"saving checkpoint {uri}"):
        save_file(trainable, f"{tmp}/trainable.safetensors")
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler_state, "rng": rng_state()},
                   f"{tmp}/training_state.pt")
        for name in ("trainable.safetensors", "training_state.pt"):
            s3.upload_file(f"{tmp}/{name}", bucket, f"{prefix}/{name}")
        state = {"step": step, **position, **meta}
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{STATE}", Body=json.dumps(state, indent=1).encode())
    return uri


def list_valid(s3, output_uri: str) -> list[tuple[int, str, dict]]:
    """(step, uri, state) of every complete checkpoint, oldest first."""
    found = []
    for uri in s3mod.list_prefixes(s3, s3mod.join(output_uri, "checkpoints")):
        bucket, prefix = s3mod.parse_uri(uri)
        try:
            with s3mod.errors(f"reading {uri}/{STATE}"):
                body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{STATE}")["Body"].read()
        except FileNotFoundError:
            log.warning("ignoring incomplete checkpoint %s (no %s)", uri, STATE)
            continue
        state = json.loads(body)
        found.append((state["step"], uri, state))
    return sorted(found, key=lambda t: t[0])


def latest(s3, output_uri: str, job_key: str, config_hash: str) -> Optional[tuple[str, dict]]:
    mine = [(uri, state) for _, uri, state in list_valid(s3, output_uri) if state.get("job") == job_key]
    if not mine:
        return None
    uri, state = mine[-1]
    if state.get("configHash") != config_hash:
        log.warning("resuming from %s although its config hash %s differs from this run's %s",
                    uri, state.get("configHash"), config_hash)
    return uri, state


def load(s3, uri: str, device) -> tuple[dict, dict]:
    """(trainable tensors, {optimizer, scheduler, rng})."""
    import torch
    from safetensors.torch import load as load_safetensors
    bucket, prefix = s3mod.parse_uri(uri)
    with s3mod.errors(f"loading checkpoint {uri}"):
        trainable = load_safetensors(s3.get_object(Bucket=bucket, Key=f"{prefix}/trainable.safetensors")["Body"].read())
        raw = s3.get_object(Bucket=bucket, Key=f"{prefix}/training_state.pt")["Body"].read()
    # The checkpoint lives in the job's output prefix, which a tenant can write: never unpickle
    # arbitrary objects from it, only tensors, containers and numbers.
    try:
        rest = torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise TrainerFailure(ExitCode.INVALID_CONFIG, f"checkpoint {uri}/training_state.pt holds more than tensors and "
                             f"numbers, so it was not loaded ({str(err).splitlines()[0]}); delete that checkpoint "
                             "to start over") from None
    return trainable, rest


def prune(s3, output_uri: str, keep: int, protect: Optional[str] = None) -> None:
    """Deletes all but the newest `keep` checkpoints (never `protect`, e.g. the best one)."""
    valid = list_valid(s3, output_uri)
    for _, uri, _ in valid[:-keep] if keep > 0 else valid:
        if uri != protect:
            s3mod.delete_prefix(s3, uri)
