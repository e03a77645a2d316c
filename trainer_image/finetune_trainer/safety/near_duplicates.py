"""Near-duplicates and leakage: MinHash signatures of the prompt, banded LSH in a compact index.

Signatures use datasketch's MinHash permutations (num_perm=64, seed 1: h'(x) = (a*h(x) + b) mod
(2^61 - 1), low 32 bits, minimum per permutation) over word 3-grams of the lowercased prompt (rows
of fewer than 3 words use their words). The band layout (b bands of r values) is datasketch's own
`_optimal_param(threshold, 64)` weighted 0.3/0.7 towards recall: two rows of Jaccard s share a band
with probability 1 - (1 - s^r)^b. A band match is then checked against the stored 8-bit b-bit
MinHash of the earlier row (Li & Konig: the low 8 bits of each value, the estimate corrected for the
1/256 chance agreement), so a candidate is reported only when its estimated Jaccard >= threshold.

Memory: datasketch's MinHashLSH keeps per key a list of b bytes objects and b set entries (about
1-2 KB per row in CPython, 1-2 GB per million rows). Here, per indexed training row: 64 bytes of
b-bit signature, 4 bytes of line number, and per band one 64-bit hash and a 32-bit row number in
open-addressing arrays that double at half load (<= 48 bytes per band). Threshold 0.9: b=4,
<= 260 B per training row (about 250 MB per million rows); 0.8: b=7, <= 400 B. Only the first row
holding a band is indexed under it, so line numbers name the earliest training row. Validation and
regression rows only query the index.
"""
from __future__ import annotations

import array
import re
from typing import Optional

import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

NUM_PERM = 64
_WORD = re.compile(r"\w+")
_PRIME = np.uint64((1 << 61) - 1)
_LOW32 = np.uint64(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1


class Signer:
    """text -> MinHash signature (NUM_PERM uint64 values), or None for a text without words."""

    def __init__(self, num_perm: int = NUM_PERM):
        a, b = MinHash(num_perm=num_perm, seed=1).permutations
        self._a, self._b = a.astype(np.uint64), b.astype(np.uint64)

    def sign(self, text: str):
        words = _WORD.findall(text.lower())
        if not words:
            return None
        grams = set(zip(words, words[1:], words[2:])) if len(words) >= 3 else {tuple(words)}
        hv = np.fromiter(map(hash, grams), dtype=np.int64, count=len(grams)).view(np.uint64) & _LOW32
        return ((np.outer(hv, self._a) + self._b) % _PRIME & _LOW32).min(axis=0)


class BandIndex:
    """Band hash -> first line, in two flat arrays (open addressing, linear probing, 0 = empty)."""

    def __init__(self, capacity: int = 1 << 12):
        self._keys, self._lines, self._n = array.array("Q", bytes(8 * capacity)), array.array("i", bytes(4 * capacity)), 0

    def __len__(self) -> int:
        return self._n

    def nbytes(self) -> int:
        return len(self._keys) * 12

    def _slot(self, key: int) -> int:
        mask = len(self._keys) - 1
        slot = key & mask
        while self._keys[slot] not in (0, key):
            slot = (slot + 1) & mask
        return slot

    def get(self, key: int):
        slot = self._slot(key)
        return self._lines[slot] if self._keys[slot] == key else None

    def add(self, key: int, line: int) -> None:
        slot = self._slot(key)
        if self._keys[slot] == key:
            return
        self._keys[slot], self._lines[slot] = key, line
        self._n += 1
        if self._n * 2 > len(self._keys):
            self._grow()

    def _grow(self) -> None:
        old = list(zip(self._keys, self._lines))
        self._keys = array.array("Q", bytes(8 * 2 * len(self._keys)))
        self._lines = array.array("i", bytes(4 * len(self._keys)))
        for key, line in old:
            if key:
                slot = self._slot(key)
                self._keys[slot], self._lines[slot] = key, line


class Signatures:
    """b-bit (8-bit) signatures of the indexed rows and their line numbers, in growing arrays."""

    def __init__(self):
        self._sigs, self._lines, self._n = np.zeros((1024, NUM_PERM), dtype=np.uint8), array.array("i"), 0

    def append(self, sig, line: int) -> int:
        if self._n == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.zeros_like(self._sigs)])
        self._sigs[self._n] = sig.astype(np.uint8)
        self._lines.append(line)
        self._n += 1
        return self._n - 1

    def jaccard(self, row: int, sig) -> float:
        agree = float(np.count_nonzero(self._sigs[row] == sig.astype(np.uint8))) / NUM_PERM
        return max(0.0, (agree - 1 / 256) / (1 - 1 / 256))

    def line(self, row: int) -> int:
        return self._lines[row]

    def nbytes(self) -> int:
        return self._sigs.nbytes + self._lines.itemsize * len(self._lines)


class NearDuplicateIndex:
    """Training prompts go in (`add`); `match` names the earliest training line sharing a band."""

    def __init__(self, threshold: float = 0.9):
        if not 0.0 < threshold <= 1.0:
            raise ValueError("the near-duplicate threshold is a Jaccard similarity in (0, 1]")
        self.threshold = threshold
        self.bands, self.rows = _optimal_param(threshold, NUM_PERM, 0.3, 0.7)
        self._signer, self._index, self._sigs = Signer(), BandIndex(), Signatures()

    def signature(self, text: str):
        """The prompt's signature and band keys, or None for a text without words."""
        sig = self._signer.sign(text)
        if sig is None:
            return None
        r = self.rows
        return sig, [(hash((i, sig[i * r:(i + 1) * r].tobytes())) & _MASK64) or 1 for i in range(self.bands)]

    def match(self, signed, threshold: Optional[float] = None):
        """The earliest indexed line whose estimated Jaccard with this row is >= threshold, or None."""
        if signed is None:
            return None
        sig, keys = signed
        threshold = self.threshold if threshold is None else threshold
        rows = sorted({row for row in map(self._index.get, keys) if row is not None})
        return next((self._sigs.line(row) for row in rows if self._sigs.jaccard(row, sig) >= threshold), None)

    def add(self, signed, line: int) -> None:
        if signed is None:
            return
        sig, keys = signed
        row = self._sigs.append(sig, line)
        for key in keys:
            self._index.add(key, row)

    def nbytes(self) -> int:
        return self._index.nbytes() + self._sigs.nbytes()
