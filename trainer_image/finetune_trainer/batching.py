"""Which examples go into which micro-batch: pure functions of lengths, seed and epoch.

Deterministic in (seed, epoch), so a resumed run replays exactly the batches an uninterrupted
run would have seen. Two ways to avoid spending compute on padding:
  - length grouping (packing off): examples of similar length share a batch;
  - packing: examples are packed first-fit into rows of up to maxSeqLength tokens; each keeps
    its own position ids, from which the model builds a block-diagonal mask, so packed
    examples never attend to each other.

Lengths may be a list or a numpy array (a store's lengths, store.py); the plan holds indices only.
First-fit packing finds the first row with room through a max-tree over the rows' free space,
O(n log n) instead of a scan of every open row per example, with the same rows as that scan.
"""
from __future__ import annotations

import random
from array import array

import numpy as np

GROUP_WINDOW = 64  # batches per sorting window: enough to group lengths, still well shuffled


def _shuffled(n: int, seed: int, epoch: int) -> list:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def plan(lengths, batch_size: int, packing: bool, max_len: int, seed: int, epoch: int,
         world_size: int = 1, rank: int = 0) -> list:
    """This rank's micro-batches for one epoch: each a list of rows, each row a list of example indices."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = _shuffled(len(lengths), seed, epoch)
    if packing:
        rows = _pack(order, lengths, max_len)
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    else:
        batches = []
        window = batch_size * GROUP_WINDOW
        for start in range(0, len(order), window):
            chunk = np.asarray(order[start:start + window], dtype=np.int64)
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")].tolist()  # stable, as sorted() was
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


def _pack(order: list, lengths, max_len: int) -> list:
    """First fit: each example goes into the first row (in opening order) with room for it.

    tree[leaf] is a row's free room; an inner node holds its children's maximum. Rows not yet
    opened have max_len free and lie right of every opened row, so the leftmost leaf with room is
    the first open row that fits, or else the next new row."""
    if not order:
        return []
    leaves = 1 << (len(order) - 1).bit_length()
    tree = array("i", [max_len]) * (2 * leaves)
    rows: list = []
    sizes = np.minimum(np.asarray(lengths, dtype=np.int64)[np.asarray(order, dtype=np.int64)], max_len).tolist()
    for i, size in zip(order, sizes):
        node = 1
        while node < leaves:
            node = 2 * node if tree[2 * node] >= size else 2 * node + 1
        r = node - leaves
        if r == len(rows):
            rows.append([i])
        else:
            rows[r].append(i)
        tree[node] -= size
        node //= 2
        while node:
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node //= 2
    return rows


def padding_ratio(batches: list, lengths: list) -> float:
    """Fraction of the tokens a batch tensor holds that are padding."""
    real = padded = 0
    for batch in batches:
        sizes = [sum(lengths[i] for i in row) for row in batch]
        real += sum(sizes)
        padded += max(sizes) * len(sizes)
    return 1 - real / padded if padded else 0.0
