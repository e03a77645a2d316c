"""Which examples go into which micro-batch: pure functions of lengths, seed and epoch.

Deterministic in (seed, epoch), so a resumed run replays exactly the batches an uninterrupted
run would have seen. Two ways to avoid spending compute on padding:
  - length grouping (packing off): examples of similar length share a batch;
  - packing: examples are packed first-fit into rows of up to maxSeqLength tokens; each keeps
    its own position ids, from which the model builds a block-diagonal mask, so packed
    examples never attend to each other.
"""
from __future__ import annotations

import random

GROUP_WINDOW = 64  # batches per sorting window: enough to group lengths, still well shuffled


def _shuffled(n: int, seed: int, epoch: int) -> list:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def plan(lengths: list, batch_size: int, packing: bool, max_len: int, seed: int, epoch: int,
         world_size: int = 1, rank: int = 0) -> list:
    """This rank's micro-batches for one epoch: each a list of rows, each row a list of example indices."""
    order = _shuffled(len(lengths), seed, epoch)
    if packing:
        rows = _pack(order, lengths, max_len)
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    else:
        batches = []
        window = batch_size * GROUP_WINDOW
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
            batches += [[[i] for i in chunk[j:j + batch_size]] for j in range(0, len(chunk), batch_size)]
        random.Random(seed * 7 + epoch).shuffle(batches)
    usable = len(batches) - len(batches) % world_size  # every rank steps the same number of times
    return batches[rank:usable:world_size]


def split_rows(batch: list, parts: int) -> list:
    """A planned micro-batch as up to `parts` smaller ones, processed one after another after an
    out-of-memory attempt: the same rows in the same order, so the step's gradient is the same."""
    if parts <= 1 or len(batch) <= 1:
        return [batch]
    size = -(-len(batch) // parts)
    return [batch[i:i + size] for i in range(0, len(batch), size)]


def _pack(order: list, lengths: list, max_len: int) -> list:
    rows, room = [], []
    for i in order:
        size = min(lengths[i], max_len)
        for r, free in enumerate(room):
            if free >= size:
                rows[r].append(i)
                room[r] -= size
                break
        else:
            rows.append([i])
            room.append(max_len - size)
    return rows


def padding_ratio(batches: list, lengths: list) -> float:
    """Fraction of the tokens a batch tensor holds that are padding."""
    real = padded = 0
    for batch in batches:
        sizes = [sum(lengths[i] for i in row) for row in batch]
        real += sum(sizes)
        padded += max(sizes) * len(sizes)
    return 1 - real / padded if padded else 0.0
