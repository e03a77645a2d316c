"""HTTP client for the adapter agent's admin API (see docs/modelversion.md and the agent contract)."""
from __future__ import annotations

import concurrent.futures
import json
import urllib.error
import urllib.request
from typing import Callable, Iterable, Optional

from .. import deadline
from .pods import Pod

# An answer larger than this is refused unread (a state listing a few hundred adapters is ~100 KiB).
MAX_RESPONSE_BYTES = 1 << 20


class AgentError(Exception):
    def __init__(self, reason: str, message: str, status: int = 0):
        super().__init__(f"{reason}: {message}")
        self.reason, self.message, self.status = reason, message, status


def _read(resp, limit: int) -> bytes:
    raw = resp.read(limit + 1)
    if len(raw) > limit:
        raise AgentError("BadResponse", f"answer larger than {limit} bytes")
    return raw


class Agent:
    """One pod's agent. `timeout` bounds each call as a whole (connect, headers and body), not
    only each socket read, so an agent that answers one byte at a time is cut off too."""

    def __init__(self, pod: Pod, port: int, token: str = "", timeout: float = 3.0):
        self.pod, self.base, self.token, self.timeout = pod, f"http://{pod.ip}:{port}", token, timeout

    def _call(self, method: str, path: str, body: Optional[dict] = None, timeout: Optional[float] = None) -> dict:
        seconds = timeout or self.timeout
        try:
            with deadline.within(seconds, f"{self.base}{path}"):
                return self._exchange(method, path, body, seconds)
        except deadline.DeadlineExceeded as err:
            raise AgentError("AgentTimeout", f"{self.base}{path}: no complete answer within {seconds:g} s") from err

    def _exchange(self, method: str, path: str, body: Optional[dict], seconds: float) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=seconds) as resp:
                raw = _read(resp, MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as err:
            raw = err.read(64 << 10)
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {}
            raise AgentError(doc.get("error") or f"HTTP{err.code}",
                             doc.get("message") or raw.decode(errors="replace")[:500], err.code) from err
        except (urllib.error.URLError, OSError) as err:
            raise AgentError("AgentUnreachable", f"{self.base}: {getattr(err, 'reason', err)}") from err
        try:
            return json.loads(raw) if raw else {}
        except ValueError as err:
            raise AgentError("BadResponse", f"{path}: not JSON: {raw[:200]!r}") from err

    def state(self) -> dict:
        return self._call("GET", "/admin/state")

    def preload(self, model: str, version: str, adapter_uri: str, manifest_uri: str, digest: str,
                timeout: float = 300.0) -> dict:
        return self._call("POST", "/admin/preload", {"model": model, "version": version, "adapterUri": adapter_uri,
                                                     "manifestUri": manifest_uri, "manifestDigest": digest},
                          timeout=timeout)

    def flip(self, model: str, name: str) -> dict:
        return self._call("POST", "/admin/flip", {"model": model, "name": name})

    def weights(self, model: str, weights: dict) -> dict:
        return self._call("POST", "/admin/weights", {"model": model, "weights": weights})

    def unload(self, name: str) -> dict:
        return self._call("POST", "/admin/unload", {"name": name})


def each(items: Iterable, fn: Callable) -> list[tuple]:
    """Runs fn on every item in parallel threads; [(item, result or None, AgentError or None)] in order."""
    items = list(items)
    if not items:
        return []

    from ..runtime.controller import LostLeadership

    def run(item):
        try:
            return item, fn(item), None
        except LostLeadership:
            raise  # not a pod's problem: the whole pass stops (pool.map re-raises it)
        except AgentError as err:
            return item, None, err
        except Exception as err:  # noqa: BLE001 - one pod's surprise must not hide the others' results
            return item, None, AgentError("AgentError", str(err))

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, len(items))) as pool:
        return list(pool.map(run, items))
