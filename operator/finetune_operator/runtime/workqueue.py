"""A work queue of object keys, in the manner of client-go's: deduplicated, delayed, one at a time per key.

- A key added while it waits is stored once; the earliest due time wins.
- A key added while a worker processes it is queued again after `done`, so no change is lost
  and no two workers ever reconcile the same object at once.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Hashable, Optional


class WorkQueue:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list = []            # (due, seq, key)
        self._due: dict = {}             # key -> due time of its live heap entry
        self._processing: set = set()
        self._dirty: dict = {}           # key -> due time, re-added when processing ends
        self._seq = itertools.count()
        self._closed = False

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        due = self._clock() + max(0.0, delay)
        with self._cond:
            if key in self._processing:
                self._dirty[key] = min(due, self._dirty.get(key, due))
                return
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cond.notify()

    def get(self, timeout: Optional[float] = None) -> Optional[Hashable]:
        """The next due key (marked processing), or None on timeout or close."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier due time
                now = self._clock()
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._processing.add(key)
                    return key
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                due = self._dirty.pop(key)
                if key not in self._due or self._due[key] > due:
                    self._due[key] = due
                    heapq.heappush(self._heap, (due, next(self._seq), key))
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)
