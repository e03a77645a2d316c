"""Tokenized examples on disk: memory-mapped numpy arrays, so the trainer's memory does not grow
with the dataset.

One store is a folder of five flat files written by streaming `data.iter_examples(...)` once:

    tokens.i32   every example's input ids, end to end            (int32)
    trained.u8   1 where the token is trained on, 0 where masked   (uint8: labels are the ids or IGNORE)
    offsets.i64  example i is tokens[offsets[i]:offsets[i + 1]]    (int64, n + 1 entries)
    lines.i64    the dataset line each example came from           (int64)
    counts.i32   per example: its length and its trained tokens    (int32, n x 2)

The writer holds at most FLUSH_TOKENS tokens before appending them to the files, and the reader
maps the files, so only the examples a batch touches are paged in. The same data gives the same
bytes, so a resumed attempt (a new pod) rebuilds the same store and the same batch plan.
Subsets (the validationSplit, a rank's share) are index arrays over one store, never copies.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

IGNORE = -100
FLUSH_TOKENS = 1 << 18  # 1 MiB of int32 tokens buffered per flush
FILES = {"tokens": ("tokens.i32", np.int32), "trained": ("trained.u8", np.uint8),
         "offsets": ("offsets.i64", np.int64), "lines": ("lines.i64", np.int64),
         "counts": ("counts.i32", np.int32)}


class StoredExample:
    """One example read from a store: numpy arrays, the same fields as data.Example."""

    __slots__ = ("input_ids", "labels", "line")

    def __init__(self, input_ids: np.ndarray, labels: np.ndarray, line: int):
        self.input_ids, self.labels, self.line = input_ids, labels, line

    def __len__(self) -> int:
        return len(self.input_ids)


class _Writer:
    def __init__(self, folder: Path):
        self.folder = folder
        self.files = {k: open(folder / name, "wb") for k, (name, _) in FILES.items()}
        self.ids: list = []
        self.trained: list = []
        self.meta: list = []  # (length, trained count, line) per buffered example
        self.buffered = self.total = 0
        self._write("offsets", [0])

    def _write(self, key: str, values) -> None:
        self.files[key].write(np.asarray(values, dtype=FILES[key][1]).tobytes())

    def add(self, input_ids, labels, line: int) -> None:
        ids = np.asarray(input_ids, dtype=np.int64)
        lab = np.asarray(labels, dtype=np.int64)
        if ids.shape != lab.shape:
            raise ValueError(f"line {line}: input_ids and labels differ in length")
        mask = lab != IGNORE
        if not np.array_equal(lab[mask], ids[mask]):
            raise ValueError(f"line {line}: a label is neither its input id nor {IGNORE}")
        self.ids.append(ids.astype(np.int32))
        self.trained.append(mask.astype(np.uint8))
        self.meta.append((len(ids), int(mask.sum()), line))
        self.buffered += len(ids)
        if self.buffered >= FLUSH_TOKENS:
            self.flush()

    def flush(self) -> None:
        if not self.meta:
            return
        self.files["tokens"].write(np.concatenate(self.ids).tobytes())
        self.files["trained"].write(np.concatenate(self.trained).tobytes())
        lengths = np.array([m[0] for m in self.meta], dtype=np.int64)
        self._write("offsets", self.total + np.cumsum(lengths))
        self._write("lines", [m[2] for m in self.meta])
        self._write("counts", [(m[0], m[1]) for m in self.meta])
        self.total += int(lengths.sum())
        self.ids, self.trained, self.meta, self.buffered = [], [], [], 0

    def close(self) -> None:
        self.flush()
        for f in self.files.values():
            f.close()


def build(folder: Path, examples: Iterable) -> "ExampleStore":
    """Writes every example (anything with input_ids, labels, line) to a fresh store in folder."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    writer = _Writer(folder)
    try:
        for e in examples:
            writer.add(e.input_ids, e.labels, e.line)
    finally:
        writer.close()
    return ExampleStore.open(folder)


def _map(path: Path, dtype) -> np.ndarray:
    if os.path.getsize(path) == 0:  # an empty file cannot be mapped
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class ExampleStore:
    """A sequence of examples over a store's mapped files, optionally through an index array."""

    def __init__(self, arrays: dict, index: Optional[np.ndarray] = None):
        self._a, self._index = arrays, index
        counts = arrays["counts"] if index is None else arrays["counts"][index]
        self.lengths = counts[:, 0]
        self.trained_counts = counts[:, 1]

    @classmethod
    def open(cls, folder: Path) -> "ExampleStore":
        arrays = {k: _map(Path(folder) / name, dtype) for k, (name, dtype) in FILES.items()}
        arrays["counts"] = arrays["counts"].reshape(-1, 2)
        return cls(arrays)

    def __len__(self) -> int:
        return len(self.lengths)

    def _row(self, i: int) -> int:
        return int(self._index[i]) if self._index is not None else i

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(np.arange(len(self))[i])
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        row = self._row(i)
        start, end = int(self._a["offsets"][row]), int(self._a["offsets"][row + 1])
        ids = np.asarray(self._a["tokens"][start:end], dtype=np.int64)
        labels = np.where(self._a["trained"][start:end] != 0, ids, IGNORE)
        return StoredExample(ids, labels, int(self._a["lines"][row]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def subset(self, positions) -> "ExampleStore":
        """The examples at these positions of this store (in that order), sharing its files."""
        positions = np.asarray(positions, dtype=np.int64)
        index = positions if self._index is None else self._index[positions]
        return ExampleStore(self._a, index)

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum(dtype=np.int64))

    @property
    def trained_tokens(self) -> int:
        return int(self.trained_counts.sum(dtype=np.int64))


def lengths_of(examples) -> np.ndarray:
    """Example lengths of a store or of a plain list of examples."""
    if isinstance(examples, ExampleStore):
        return examples.lengths
    return np.array([len(e) for e in examples], dtype=np.int64)


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, held-out positions), each in dataset order: the held-out set is the first
    ceil(n * fraction) of a seeded shuffle (random.Random, as before the store, so the same rows)."""
    import math
    import random
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = np.zeros(n, dtype=bool)
    held[np.asarray(order[:max(1, math.ceil(n * fraction))], dtype=np.int64)] = True
    del order
    return np.flatnonzero(~held), np.flatnonzero(held)


def folder_for(work_dir: Path, name: str) -> Path:
    """Where this process keeps a store: one folder per rank, so processes on one node never share files."""
    return Path(work_dir) / "examples" / f"rank-{os.environ.get('RANK', '0')}" / name
