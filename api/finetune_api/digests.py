"""Content digests as the trainer writes them and the operator and the agent check them.

Two definitions, each used by more than one process:
- `file_sha256`: hex sha256 of one file (the manifest's per-file `sha256`).
- `folder_digest`: a model folder's identity, "sha256:" + sha256 over the lines
  "<relative path> <file sha256>\\n" of its files in path order. The same weights have the same
  digest wherever they are stored; spec.baseModel.digest pins it, the trainer records it in the
  manifest's baseModel.digest, and the engine reports it for its base model. A checkpoint's
  digest (status.checkpoints[].digest) is the same definition over the checkpoint's files
  (flat: `entries_digest`, from the bytes read back, so nothing is written to disk to check it).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

# Not model files: the GGUF converter's provenance note, and the marker a finished download leaves.
CONVERTED_MARKER = "fto-converted.json"
DOWNLOAD_MARKER = ".complete"
IGNORED_FILES = frozenset({CONVERTED_MARKER, DOWNLOAD_MARKER})


def bytes_digest(data: bytes) -> str:
    """'sha256:<hex>' of a byte string."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def entries_digest(entries: dict) -> str:
    """folder_digest of a flat folder, from {file name: file sha256 hex} (names hold no '/')."""
    if any("/" in name for name in entries):
        raise ValueError("entries_digest takes the files of one flat folder")
    return bytes_digest("".join(f"{name} {entries[name]}\n" for name in sorted(entries)).encode())


def folder_digest(folder: Path) -> str:
    lines = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name not in IGNORED_FILES):
        lines.append(f"{path.relative_to(folder).as_posix()} {file_sha256(path)}\n")
    return bytes_digest("".join(lines).encode())
