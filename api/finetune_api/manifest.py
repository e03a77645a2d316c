"""The AdapterManifest: what a finished training run wrote, and the one definition of its digest.

The trainer writes `<spec.output.uri>/manifest.json` beside `adapter/`; the operator verifies it
(every file's sha256 and size against S3) before status.result is set or anything is served; the
adapter agent verifies it again before it loads an adapter into an engine.

`digest(raw)` is status.result.adapterDigest, a ModelVersion's adapter digest and the agent's
manifestDigest: the sha256 of manifest.json's bytes exactly as stored. The manifest lists every
adapter file's sha256 and size, so this one digest pins the whole adapter (and what it was
trained from); served adapter names are derived from it (finetune_api.naming).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Optional

from . import datasets
from .digests import bytes_digest, file_sha256

API_VERSION = "finetune.fto.dev/v1alpha1"
KIND = "AdapterManifest"
FILE_NAME = "manifest.json"
ADAPTER_DIR = "adapter"               # files are listed as "adapter/<path inside the adapter folder>"
ADAPTER_METHODS = ("lora", "qlora")   # a full fine-tune writes weights, not an adapter an engine can load
DIGEST_DOC = ("sha256 of the bytes of manifest.json (status.result.manifestUri). The manifest lists every "
              "adapter file's sha256 and size, so this digest pins the whole adapter.")

# ManifestError reasons.
INVALID = "InvalidManifest"
DIGEST_MISMATCH = "DigestMismatch"
NOT_AN_ADAPTER = "NotAnAdapter"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclasses.dataclass(frozen=True)
class ManifestFile:
    name: str                 # "adapter/adapter_model.safetensors"
    sha256: str               # hex
    size: Optional[int] = None

    @property
    def path(self) -> str:
        """The path inside the adapter folder."""
        return self.name[len(ADAPTER_DIR) + 1:]

    def to_doc(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclasses.dataclass(frozen=True)
class AdapterManifest:
    digest: str                           # digest(raw) of the bytes it was parsed from
    files: tuple                          # ManifestFile, in the order written
    method: Optional[str] = None          # lora | qlora | full
    rank: Optional[int] = None            # lora.r
    alpha: Optional[float] = None         # lora.alpha
    target_modules: tuple = ()            # lora.targetModules, sorted
    base_name: str = ""                   # baseModel.name
    base_digest: str = ""                 # baseModel.digest (finetune_api.digests.folder_digest)
    doc: dict = dataclasses.field(default_factory=dict, compare=False)  # the whole document as read


def digest(raw: bytes) -> str:
    """status.result.adapterDigest / manifestDigest: see the module docstring."""
    return bytes_digest(raw)


def encode(doc: dict) -> bytes:
    """The bytes the trainer stores (stable key order, so equal documents have equal digests)."""
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def adapter_uri(manifest_uri: str) -> str:
    """The adapter folder beside a manifest: s3://b/out/manifest.json -> s3://b/out/adapter."""
    return manifest_uri.rsplit("/", 1)[0] + "/" + ADAPTER_DIR


def file_entries(folder: Path) -> list:
    """The manifest's files list for an adapter folder, in path order."""
    return [{"name": f"{ADAPTER_DIR}/{p.relative_to(folder).as_posix()}", "sha256": file_sha256(p),
             "size": p.stat().st_size} for p in sorted(Path(folder).rglob("*")) if p.is_file()]


def build(*, job: dict, method: str, model_type: str, lora: Optional[dict], files: list, base_model: dict,
          dataset: dict, dataset_stats: dict, config_hash: str, trainer_version: str, trainer_image: str,
          metrics: dict, steps: int, tokens: int, wall_seconds: float, created_at: str,
          precision: Optional[str] = None) -> dict:
    """The document the trainer writes. lora: {"r", "alpha", "targetModules"} or None (full).
    dataset: {"uri", "validationUri", "sources": finetune_api.datasets documents (each object's role, uri,
    sha256, bytes, versionId?, derivedFrom?), "etag": the training object's S3 ETag, kept for readers of
    older manifests: it is no content digest (a multipart upload's ETag is not); sources are}.
    precision: the effective spec.training.precision (bf16, fp16 or fp32; auto resolved on the hardware)."""
    return {"apiVersion": API_VERSION, "kind": KIND, "job": job, "method": method, "modelType": model_type,
            "precision": precision, "lora": lora, "files": files, "baseModel": base_model, "dataset": dataset,
            "datasetStats": dataset_stats, "configHash": config_hash, "trainerVersion": trainer_version,
            "trainerImage": trainer_image, "metrics": metrics, "steps": steps, "tokens": tokens,
            "wallSeconds": wall_seconds, "createdAt": created_at}


def dataset_sources(doc: dict) -> list:
    """The manifest's dataset.sources (finetune_api.datasets documents) as checked documents for lineage;
    [] when absent or malformed (an older trainer wrote only dataset.etag)."""
    try:
        return datasets.to_docs(datasets.from_docs((doc.get("dataset") or {}).get("sources") or []))
    except datasets.DatasetSourcesError:
        return []


def parse(raw: bytes, expected_digest: Optional[str] = None) -> AdapterManifest:
    """Checks the bytes against expected_digest (when given), then the document's shape."""
    got = digest(raw)
    if expected_digest and expected_digest != got:
        raise ManifestError(DIGEST_MISMATCH, f"the manifest hashes to {got}, not the expected {expected_digest}")
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise ManifestError(INVALID, f"the manifest is not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ManifestError(INVALID, f"the manifest is not an {KIND} (kind)")
    if not isinstance(doc.get("files"), list) or not doc["files"]:
        raise ManifestError(INVALID, "the manifest has no files list")
    lora, base = doc.get("lora") or {}, doc.get("baseModel") or {}
    try:
        files = tuple(_file(entry) for entry in doc["files"])
        rank = int(lora["r"]) if lora.get("r") is not None else None
        targets = tuple(sorted(lora.get("targetModules") or ()))
    except (KeyError, TypeError, ValueError) as err:
        raise ManifestError(INVALID, f"the manifest lacks or garbles {err}") from None
    return AdapterManifest(digest=got, files=files, method=doc.get("method"), rank=rank, alpha=lora.get("alpha"),
                           target_modules=targets, base_name=str(base.get("name") or ""),
                           base_digest=str(base.get("digest") or ""), doc=doc)


def _file(entry) -> ManifestFile:
    if not isinstance(entry, dict):
        raise ValueError(f"file entry {entry!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.startswith(ADAPTER_DIR + "/"):
        raise ValueError(f"file name {name!r} (must start with {ADAPTER_DIR}/)")
    if any(part in ("", ".", "..") for part in name[len(ADAPTER_DIR) + 1:].split("/")):
        raise ValueError(f"file name {name!r}")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise ValueError(f"sha256 of {name!r}")
    size = entry.get("size")
    return ManifestFile(name, sha, int(size) if size is not None else None)


def require_adapter(manifest: AdapterManifest) -> None:
    """An engine can load it at runtime: a LoRA method, a rank, and an adapter_config.json."""
    if manifest.method not in ADAPTER_METHODS:
        raise ManifestError(NOT_AN_ADAPTER, f"method {manifest.method!r} produces no LoRA adapter; only "
                                            f"{', '.join(ADAPTER_METHODS)} can be loaded at runtime")
    if manifest.rank is None:
        raise ManifestError(INVALID, "the manifest lacks or garbles 'r' (lora.r)")
    if not any(f.path == "adapter_config.json" for f in manifest.files):
        raise ManifestError(INVALID, f"the manifest lists no {ADAPTER_DIR}/adapter_config.json")


def mismatches(manifest: AdapterManifest, actual: dict) -> list:
    """actual: {path inside the adapter folder: (sha256 hex, size or None)} of what is stored.
    One line per listed file that is missing or differs from the manifest; [] when all match."""
    bad = []
    for f in manifest.files:
        if f.path not in actual:
            bad.append(f"{f.path} (missing)")
            continue
        sha, size = actual[f.path]
        if sha != f.sha256:
            bad.append(f"{f.path} (expected sha256 {f.sha256[:12]}…, got {sha[:12]}…)")
        elif f.size is not None and size is not None and size != f.size:
            bad.append(f"{f.path} (expected {f.size} bytes, got {size})")
    return bad
