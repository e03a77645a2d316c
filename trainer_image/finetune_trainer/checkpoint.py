"""Resumable checkpoints in S3: <output>/checkpoints/step-NNNNNNNN/.

A checkpoint holds the trained parameters, optimiser, scheduler, RNG states and the data
position (epoch, micro-batch). state.json is uploaded last: a checkpoint without it was cut
short and is ignored. Its digest (finetune_api.resume: the folder digest of its three files) is
taken as it is written and reported, so the operator can record it in status.checkpoints.

Which one a run resumes from (`resume_point`): under the policy RECORDED (what the operator's
configs say) exactly the pointer the operator passed, loaded only if its files' digest is the
recorded one (else CheckpointMismatch), and none without a pointer, whatever the prefix holds;
under LATEST (runs by hand) the newest checkpoint of the same job (namespace/name/uid), with a
warning when the training config hash differs. The newest `keep` checkpoints are kept.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import random
import tempfile
from pathlib import Path
from typing import Optional

from finetune_api import digests, resume

from . import s3 as s3mod
from .outcomes import ExitCode, TrainerFailure

log = logging.getLogger("finetune-trainer")
STATE = "state.json"


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
         scheduler_state: dict, meta: dict) -> tuple[str, str]:
    """Uploads a checkpoint; returns (its URI, its digest)."""
    import torch
    from safetensors.torch import save_file
    uri = resume.checkpoint_uri(output_uri, step)
    bucket, prefix = s3mod.parse_uri(uri)
    with tempfile.TemporaryDirectory() as tmp, s3mod.errors(f"saving checkpoint {uri}"):
        save_file(trainable, f"{tmp}/trainable.safetensors")
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler_state, "rng": rng_state()},
                   f"{tmp}/training_state.pt")
        Path(tmp, STATE).write_bytes(json.dumps({"step": step, **position, **meta}, indent=1).encode())
        digest = digests.entries_digest({name: digests.file_sha256(Path(tmp, name)) for name in resume.FILES})
        for name in resume.FILES:  # state.json last: it marks the checkpoint complete
            s3.upload_file(f"{tmp}/{name}", bucket, f"{prefix}/{name}")
    return uri, digest


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
        try:
            state = json.loads(body)
        except ValueError:
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            log.warning("ignoring checkpoint %s: its %s is not one the trainer writes", uri, STATE)
            continue
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


def resume_point(s3, cfg) -> Optional[tuple[str, Optional[str]]]:
    """(uri, digest to check, None under LATEST) of the checkpoint this run resumes from, or None."""
    rt = cfg.runtime
    if rt.resume_from:
        return rt.resume_from["uri"], rt.resume_from["digest"]
    if rt.resume_policy == resume.RECORDED:
        if cfg.job.attempt > 1:
            log.info("no checkpoint recorded for this job: starting from step 0 (checkpoints found under "
                     "spec.output.uri are not resumed unless the operator recorded them)")
        return None
    found = latest(s3, cfg.output_uri, cfg.job.key, cfg.config_hash)
    return (found[0], None) if found else None


def _mismatch(uri: str, why: str) -> TrainerFailure:
    return TrainerFailure(ExitCode.CHECKPOINT_MISMATCH,
                          f"checkpoint {uri} is not the one this job recorded in status.checkpoints: {why}; it was "
                          "not loaded. Someone with write access to spec.output.uri changed or removed it after "
                          "the trainer wrote it: check who can write that prefix, then create the job again "
                          "(it starts from step 0)")


def read(s3, uri: str, digest: Optional[str] = None) -> dict:
    """{file name: bytes} of a checkpoint; with a digest, only if its files' digest is that one."""
    bucket, prefix = s3mod.parse_uri(uri)
    files = {}
    for name in resume.FILES:
        try:
            with s3mod.errors(f"loading checkpoint {uri}"):
                files[name] = s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()
        except FileNotFoundError:
            if digest:
                raise _mismatch(uri, f"{name} is missing") from None
            raise
    if digest:
        actual = digests.entries_digest({name: hashlib.sha256(body).hexdigest() for name, body in files.items()})
        if actual != digest:
            raise _mismatch(uri, f"its files' digest is {actual}, the recorded one {digest}")
    return files


def load(s3, uri: str, device, digest: Optional[str] = None) -> tuple[dict, dict, dict]:
    """(trainable tensors, {optimizer, scheduler, rng}, state.json); checked against digest when given."""
    import torch
    from safetensors.torch import load as load_safetensors
    files = read(s3, uri, digest)
    trainable = load_safetensors(files["trainable.safetensors"])
    # The checkpoint lives in the job's output prefix, which a tenant can write: never unpickle
    # arbitrary objects from it, only tensors, containers and numbers.
    try:
        rest = torch.load(io.BytesIO(files["training_state.pt"]), map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise TrainerFailure(ExitCode.INVALID_CONFIG, f"checkpoint {uri}/training_state.pt holds more than tensors and "
                             f"numbers, so it was not loaded ({str(err).splitlines()[0]}); delete that checkpoint "
                             "to start over") from None
    return trainable, rest, json.loads(files[STATE])


def prune(s3, output_uri: str, keep: int, protect: Optional[str] = None) -> None:
    """Deletes all but the newest `keep` checkpoints (never `protect`, e.g. the best one)."""
    valid = list_valid(s3, output_uri)
    for _, uri, _ in valid[:-keep] if keep > 0 else valid:
        if uri != protect:
            s3mod.delete_prefix(s3, uri)
