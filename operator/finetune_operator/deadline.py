"""Total deadlines for the operator's outbound calls (S3, adapter agents, Prometheus).

A socket timeout bounds each read, not the call: a server that sends one byte every few seconds
never trips it and holds the caller for as long as it likes. `within(seconds, what)` bounds the
whole call instead. Every socket the calling thread connects while the deadline is open is
recorded (through the interpreter's `socket.connect` audit event, so http.client, urllib and
urllib3/botocore are all covered without touching their internals); when the deadline passes, a
watchdog thread shuts those sockets down, which wakes any read blocked on them, and a connect
attempted after it (a library's retry) is refused at once. Nested deadlines never extend the
outer one, and sockets an inner one connected stay bounded by the outer one after it ends
(a response body read after the call that fetched its headers).
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import sys
import threading
import time
from typing import Iterator, Optional


class DeadlineExceeded(OSError):
    """Raised for a connect attempted after the deadline, or by `within` for a call it cut short."""


class Budget:
    def __init__(self, seconds: float, what: str, parent: Optional["Budget"], clock=time.monotonic):
        self.seconds, self.what, self.parent = seconds, what, parent
        own = clock() + max(0.0, seconds)
        self.at = min(own, parent.at) if parent is not None else own
        self.expired = False
        self._sockets: list = []
        self._lock = threading.Lock()
        self._open = True

    def adopt(self, sock) -> None:
        with self._lock:
            if self.expired:
                raise DeadlineExceeded(f"{self.what}: deadline of {self.seconds:g} s passed")
            if self._open:
                self._sockets.append(sock)

    def expire(self) -> None:
        with self._lock:
            if not self._open:
                return
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def close(self) -> list:
        with self._lock:
            self._open = False
            sockets, self._sockets = self._sockets, []
        return sockets

    def remaining(self, clock=time.monotonic) -> float:
        return max(0.0, self.at - clock())


_local = threading.local()


def current() -> Optional[Budget]:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def expired() -> bool:
    """Whether an open deadline of this thread (or one it is nested in) has passed."""
    b = current()
    while b is not None:
        if b.expired:
            return True
        b = b.parent
    return False


def enter(seconds: float, what: str) -> Budget:
    """Opens a deadline on this thread (prefer `within`; this pair is for event hooks)."""
    _install()
    stack = _local.__dict__.setdefault("stack", [])
    budget = Budget(seconds, what, stack[-1] if stack else None)
    stack.append(budget)
    _WATCHDOG.watch(budget)
    return budget


def leave(budget: Budget) -> None:
    """Closes budget (idempotent); its sockets pass to the deadline it was nested in."""
    stack = getattr(_local, "stack", None) or []
    if budget in stack:
        stack.remove(budget)
    sockets = budget.close()
    if budget.parent is not None and not budget.parent.expired:
        for sock in sockets:
            try:
                budget.parent.adopt(sock)
            except DeadlineExceeded:
                break


def reset() -> None:
    """Drops every deadline this thread holds (a worker starting a new pass)."""
    for budget in list(getattr(_local, "stack", None) or []):
        budget.close()
    _local.stack = []


@contextlib.contextmanager
def within(seconds: float, what: str) -> Iterator[Budget]:
    """Runs the block under a total deadline; an error raised because it passed is DeadlineExceeded."""
    budget = enter(seconds, what)
    try:
        yield budget
    except DeadlineExceeded:
        raise
    except Exception as err:
        if budget.expired:
            raise DeadlineExceeded(f"{what}: no complete answer within {seconds:g} s") from err
        raise
    finally:
        leave(budget)


def _hook(event: str, args: tuple) -> None:
    if event != "socket.connect":
        return
    stack = getattr(_local, "stack", None)
    if stack:
        stack[-1].adopt(args[0])


class _Watchdog:
    """One thread that expires budgets at their deadline (a heap, so many calls cost one thread)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def watch(self, budget: Budget) -> None:
        with self._cond:
            heapq.heappush(self._heap, (budget.at, next(self._seq), budget))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, budget = heapq.heappop(self._heap)
            budget.expire()


_WATCHDOG = _Watchdog()
_installed = False
_install_lock = threading.Lock()


def _install() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
