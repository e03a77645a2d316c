"""A work queue of object keys, in the manner of client-go's: deduplicated, delayed, one at a time per key,
and fair across namespaces.

- A key added while it waits is stored once; the earliest due time wins.
- A key added while a worker processes it is queued again after `done`, so no change is lost
  and no two workers ever reconcile the same object at once.
- Keys are grouped by shard (the namespace): `get` takes due keys from the shards in turn
  (round-robin), so one namespace's many keys cannot starve another's.
- `shard_limit` caps how many keys of one shard are processed at once, so one namespace whose
  passes are slow (a tarpit endpoint) cannot hold every worker: the others always keep
  workers - shard_limit of them. The cap is strict, not work-conserving: a worker taken by a
  slow pass cannot be handed back when another namespace's work arrives, so lending idle
  workers past the cap would let the slow namespace keep them.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import threading
import time
from typing import Callable, Hashable, Optional


def namespace_of(key: Hashable) -> Hashable:
    """The runtime's keys are (plural, namespace, name); anything else is one shard of its own."""
    return key[1] if isinstance(key, tuple) and len(key) == 3 else None


def may_start(active_in_shard: int, shard_limit: Optional[int]) -> bool:
    """Pure: whether a worker may take a key of a shard that has active_in_shard keys in flight."""
    return shard_limit is None or active_in_shard < shard_limit


class WorkQueue:
    def __init__(self, clock=time.monotonic, shard: Callable[[Hashable], Hashable] = namespace_of,
                 shard_limit: Optional[int] = None):
        self._clock, self._shard = clock, shard
        self.shard_limit = shard_limit
        self._cond = threading.Condition()
        self._heaps: dict = {}           # shard -> heap of (due, seq, key)
        self._ring: collections.OrderedDict = collections.OrderedDict()  # shards, next to serve first
        self._due: dict = {}             # key -> due time of its live heap entry
        self._processing: set = set()
        self._active: collections.Counter = collections.Counter()  # shard -> keys in flight
        self._dirty: dict = {}           # key -> due time, re-added when processing ends
        self._seq = itertools.count()
        self._closed = False

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        due = self._clock() + max(0.0, delay)
        with self._cond:
            if key in self._processing:
                self._dirty[key] = min(due, self._dirty.get(key, due))
                return
            self._push(key, due)

    def _push(self, key: Hashable, due: float) -> None:
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        shard = self._shard(key)
        if shard not in self._heaps:
            self._heaps[shard] = []
            self._ring[shard] = None
        heapq.heappush(self._heaps[shard], (due, next(self._seq), key))
        self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Hashable]:
        """The next due key (marked processing), or None on timeout or close."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                key, wait = self._take(now)
                if key is not None:
                    return key
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def _take(self, now: float) -> tuple:
        """(a due key of the first shard in turn that may start one, None) or (None, seconds until
        the earliest due key of a shard that may start; None: nothing to wait for)."""
        wait = None
        for shard in list(self._ring):
            heap = self._heaps[shard]
            while heap and self._due.get(heap[0][2]) != heap[0][0]:
                heapq.heappop(heap)  # superseded by an earlier due time
            if not heap:
                del self._heaps[shard], self._ring[shard]
                continue
            if not may_start(self._active[shard], self.shard_limit):
                continue
            if heap[0][0] > now:
                wait = heap[0][0] - now if wait is None else min(wait, heap[0][0] - now)
                continue
            _, _, key = heapq.heappop(heap)
            del self._due[key]
            self._processing.add(key)
            self._active[shard] += 1
            self._ring.move_to_end(shard)  # served: the other shards go first next time
            return key, None
        return None, wait

    def done(self, key: Hashable) -> None:
        with self._cond:
            if key in self._processing:
                self._processing.discard(key)
                shard = self._shard(key)
                self._active[shard] -= 1
                if self._active[shard] <= 0:
                    del self._active[shard]
            if key in self._dirty:
                self._push(key, self._dirty.pop(key))
            self._cond.notify_all()  # a shard at its cap may start again

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)
