"""Act: performs a Decision's actions in order, each safe to repeat (an agent call that is already
done is answered as done; the record is written compare-and-swap), and says what happened.

An all-or-nothing agent action that fails on any pod stops the actions after it (e.g. the record
is not switched to production when a flip missed a pod). A pod that failed once in a pass is not
called again in that pass.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

from .. import metrics
from . import agent_client
from .snapshot import AGENT_ACTIONS, Count, Emit, Enqueue, Flip, Outcome, Preload, Report, Weights, WriteRecord

PLURAL = "modelversions"
PRELOAD_TIMEOUT = 300.0     # download + verify + load


@dataclasses.dataclass
class Result:
    outcome: Outcome
    record: object = None                         # the record as last written (None: not written)
    done: list = dataclasses.field(default_factory=list)   # (agent action, pod names it succeeded on)
    performed: list = dataclasses.field(default_factory=list)   # Emit/Count/Report actions performed


class Actor:
    def __init__(self, namespace: str, model: str, store, observer, emit: Callable, runtime=None,
                 analysis_seen: float = 0.0):
        self.ns, self.model, self.store, self.observer = namespace, model, store, observer
        self._emit, self.runtime, self.seen = emit, runtime, analysis_seen

    def run(self, actions: list, resource_version: str, skip: tuple = ()) -> Result:
        """skip: actions a previous run of this pass already performed (events, counts) are not repeated."""
        failures: dict = {}
        result = Result(Outcome())
        seconds, missed = None, {}
        for action in actions:
            if action in skip:
                continue
            if isinstance(action, WriteRecord):
                rec = dataclasses.replace(action.record, resource_version=resource_version)
                result.record = self.store.write(rec)
                resource_version = result.record.resource_version
            elif isinstance(action, AGENT_ACTIONS):
                pods = tuple(p for p in action.pods if p.name not in failures)
                failed = self._agents(action, pods)
                failures.update(failed)
                result.done.append((action, {p.name for p in pods} - set(failed)))
                if getattr(action, "measure", ""):
                    seconds, missed = time.monotonic() - self.seen, failed
                    metrics.ROLLBACK_SECONDS.labels(self.ns, self.model).observe(seconds)
                if failed and action.all_or_nothing:
                    result.outcome = Outcome(tuple(sorted(failures.items())), True, seconds)
                    return result
            else:
                self._other(action, seconds, missed)
                result.performed.append(action)
        result.outcome = Outcome(tuple(sorted(failures.items())), False, seconds)
        return result

    def _other(self, action, seconds: Optional[float], missed: dict) -> None:
        if isinstance(action, Emit):
            self._emit(action.type, action.reason, action.message)
        elif isinstance(action, Report):
            done = action.total - len(missed)
            self._emit(action.type, action.reason, f"{action.head} on {done}/{action.total} pods in "
                                                   f"{(seconds or 0.0):.3f} s" +
                       (f"; still to flip (converged later): {sorted(missed)}" if missed else ""))
        elif isinstance(action, Count):
            metric = getattr(metrics, action.metric).labels(*action.labels)
            metric.set(action.value) if action.op == "set" else metric.inc(action.value)
        elif isinstance(action, Enqueue) and self.runtime is not None:
            if action.name:
                self.runtime.enqueue(PLURAL, self.ns, action.name)
            else:
                self.runtime.enqueue_namespace(PLURAL, self.ns)

    # --- agent calls --------------------------------------------------------------------------------------------
    def _agents(self, action, pods: tuple) -> dict:
        call = self._call(action)
        out = {}
        for pod, result, err in agent_client.each(pods, call):
            if err is not None:
                out[pod.name] = f"{err.reason}: {err.message}"
            elif isinstance(action, Preload):
                self._preloaded(pod, result or {})
        return out

    def _call(self, action) -> Callable:
        model, agent = self.model, self.observer.agent
        if isinstance(action, Preload):
            a = action.adapter
            return lambda pod: agent(pod, PRELOAD_TIMEOUT).preload(model, action.version, a.uri, a.manifest_uri,
                                                                   a.digest)
        if isinstance(action, Flip):
            return lambda pod: self._flip(pod, action)
        if isinstance(action, Weights):
            return lambda pod: agent(pod).weights(model, action.weights)
        return lambda pod: agent(pod).unload(action.name)

    def _flip(self, pod, action: Flip) -> dict:
        try:
            return self.observer.agent(pod).flip(self.model, action.name)
        except agent_client.AgentError as err:
            if err.reason != "NotLoaded" or action.restore is None:
                raise
        adapter, version = action.restore  # a pod lacking the restored version gets it preloaded first
        self.observer.agent(pod, PRELOAD_TIMEOUT).preload(self.model, version, adapter.uri, adapter.manifest_uri,
                                                          adapter.digest)
        return self.observer.agent(pod).flip(self.model, action.name)

    def _preloaded(self, pod, result: dict) -> None:
        seconds = float(result.get("seconds") or 0)
        if not result.get("alreadyLoaded"):
            metrics.ADAPTER_LOAD_SECONDS.labels(self.ns, self.model).observe(seconds)
            self._emit("Normal", "AdapterPreloaded", f"pod {pod.name} loaded {result.get('name')} in {seconds:.2f} s")
