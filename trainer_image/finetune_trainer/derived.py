"""Transformed copies of the dataset (spec.dataSafety Redact, Drop and cleaning), and reading them.

The validate pod's gate (safety/gate.py) writes every kept row of a role it changed to a local
JSONL file as chat messages ({"messages": [...]}) or text ({"text": ...}). Here each copy is
written back in the dataset's own format and field names (so training reads it exactly as it
would read the original, with the same checks, the same chat template and the same tokens),
uploaded under spec.output.uri as dataset/<role>.jsonl, and reported as a finetune_api.datasets
source with derivedFrom = the original's uri and sha256 (Contract B). At training time
`training_config` names the copy instead of the original for each role a copy was validated for
(the regression set too: it is read as promptCompletion with the default field names).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Iterator, Optional

from finetune_api import datasets

from . import s3 as s3mod

COPY_DIR = "dataset"
# Where each role's object is named in the spec: (section, key).
ROLE_KEYS = {"train": ("dataset", "uri"), "validation": ("dataset", "validationUri"),
             "regression": ("evaluation", "regressionUri")}


def copy_uri(output_uri: str, role: str) -> str:
    return s3mod.join(output_uri.rstrip("/"), f"{COPY_DIR}/{role}.jsonl")


def to_record(row: dict, fmt: str, fields: dict) -> dict:
    """A gate row ({"messages": [...]} or {"text": ...}) as a record of the dataset's format and fields,
    one that data.to_messages turns back into the same messages."""
    if fmt == "text":
        return {fields["text"]: row["text"]}
    messages = row["messages"]
    if fmt == "chat":
        return {fields["messages"]: messages}
    system = [m["content"] for m in messages[:1] if m["role"] == "system"]
    user = next(m["content"] for m in messages if m["role"] == "user")
    answer = next(m["content"] for m in reversed(messages) if m["role"] == "assistant")
    keys = ("prompt", "completion") if fmt == "promptCompletion" else ("instruction", "response")
    record = {fields[keys[0]]: user, fields[keys[1]]: answer}
    if system:
        record[fields.get("system", "system")] = system[0]
    return record


def _converted(path: Path, fmt: str, fields: dict) -> Iterator[bytes]:
    with open(path, "rb") as rows:
        for line in rows:
            if line.strip():
                yield (json.dumps(to_record(json.loads(line), fmt, fields), ensure_ascii=False) + "\n").encode()


def write_copy(path: Path, out: Path, fmt: str, fields: dict) -> tuple[str, int]:
    """Writes the converted copy to `out`, one row at a time; returns (sha256 hex, bytes)."""
    sha, size = hashlib.sha256(), 0
    with open(out, "wb") as f:
        for chunk in _converted(path, fmt, fields):
            sha.update(chunk)
            size += len(chunk)
            f.write(chunk)
    return sha.hexdigest(), size


def _original(sources: list, role: str, uri: str) -> dict:
    found = next((s for s in sources if s.get("role") == role and s.get("uri") == uri and not s.get("derivedFrom")),
                 None)
    if found is None:
        raise RuntimeError(f"no digest was recorded for the {role} object, so its copy cannot name what it "
                           "derives from")
    return found


def _original_uri(spec: dict, role: str) -> Optional[str]:
    section, key = ROLE_KEYS[role]
    return (spec.get(section) or {}).get(key)


def _shape(cfg, role: str) -> tuple[str, dict]:
    """The format and field names a role's object is read with (data.dataset_objects)."""
    if role == "regression":
        from .config import DEFAULT_FIELDS
        return "promptCompletion", DEFAULT_FIELDS["promptCompletion"]
    return cfg.dataset["format"], cfg.fields


def upload_copies(s3, cfg, copy_paths: dict, sources: list) -> list:
    """Uploads each role's transformed copy; returns their source documents (derivedFrom the original)."""
    out = []
    for role, path in sorted(copy_paths.items()):
        original_uri = _original_uri(cfg.spec, role) if role in ROLE_KEYS else None
        if not original_uri:
            continue  # a role this job has no object for
        original = _original(sources, role, original_uri)
        converted = Path(path).with_name(f"{Path(path).stem}.upload.jsonl")
        digest, size = write_copy(Path(path), converted, *_shape(cfg, role))
        uri = copy_uri(cfg.output_uri, role)
        bucket, obj_key = s3mod.parse_uri(uri)
        with s3mod.errors(f"writing the transformed {role} data to {uri}"):
            s3.upload_file(str(converted), bucket, obj_key)
        converted.unlink(missing_ok=True)
        out.append(datasets.DatasetSource(role=role, uri=uri, sha256=digest, bytes=size,
                                          derived_from=datasets.DerivedFrom(original_uri, original["sha256"])).to_doc())
    return out


def read_uri(validated: tuple, role: str, uri: str) -> str:
    """Which object to read for `role`: the validated transformed copy derived from `uri`, else `uri`."""
    return datasets.read_uri(validated, role, uri)


def training_config(cfg):
    """cfg as training reads its data: each role's object replaced by its validated copy, if any.

    The copies are JSONL in the dataset's own format, so only the uris (and an explicit fileFormat,
    which names the original's) change; the run's identity (config_hash) is taken from cfg before."""
    spec = {section: dict(cfg.spec.get(section) or {}) for section in ("dataset", "evaluation")}
    for role, (section, key) in ROLE_KEYS.items():
        if spec[section].get(key):
            spec[section][key] = read_uri(cfg.runtime.validated_datasets, role, spec[section][key])
    if spec["dataset"] == cfg.dataset and spec["evaluation"] == (cfg.spec.get("evaluation") or {}):
        return cfg
    spec["dataset"]["fileFormat"] = "auto"  # the copies end in .jsonl; an original keeps its own extension
    return dataclasses.replace(cfg, spec={**cfg.spec, **spec})


def safety_config(cfg) -> Optional[dict]:
    """The gate's config: spec.dataSafety (defaulted) with the moderation URL the operator resolved
    from the admin's list (runtime.moderationUrl); None when the job has no spec.dataSafety."""
    spec = cfg.spec.get("dataSafety")
    if spec is None:
        return None
    url = getattr(cfg.runtime, "moderation_url", None)
    moderation = {**(spec.get("moderation") or {}), **({"url": url} if url else {})}
    return {**spec, "moderation": moderation}
