"""The ModelVersion controller: one level-triggered pass, safe to repeat and to kill at any point.

A pass, in order: register (wait for the FineTuneJob or verify the s3:// adapter's manifest and
sha256s, once), gates, then by what the model's production record (record.py) says:
- this version is production: converge every ready pod (preload, alias 100 % here, skew reported
  and corrected) and, in the bake window, watch spec.rollback; a breach restores the previous version;
- this version holds the promotion lock: phase 1 preload everywhere (all or nothing), then the
  alias flip, or the canary steps with their analysis;
- this version asks for production with an undecided request: compatibility, then the lock (one
  promotion per model at a time; two asking at once: the older object wins);
- otherwise: status says how its last request was decided (superseded, conflict, failed, rolled back).

Decisions that must survive a SIGKILL live in the record (written compare-and-swap before the
pods are touched); status is rebuilt from the record and the pods on every pass.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import threading
import time
from typing import Callable, Optional

from .. import kube, metrics, status as st, storage
from ..builders.settings import OperatorSettings
from . import agent_client, analysis, canary, compatibility, gates as gatesmod, naming, plan, prometheus, record, \
    register, skew
from .pods import PodView, label_selector, ready_pods, served_by, view_from_state

log = logging.getLogger("finetune-operator.modelversion")
GROUP, VERSION, PLURAL = "finetune.fto.dev", "v1alpha1", "modelversions"
Event = Callable[[str, str, str], None]

BASE_VERSION = "base"       # status.rollback.restoredVersion when the alias went back to the base model
CONVERGE_SECONDS = 2.0      # production versions look at their pods this often
STATE_TIMEOUT = 2.0         # /admin/state, flip, weights: short, a rollback must finish in seconds
PRELOAD_TIMEOUT = 300.0     # download + verify + load
# Conditions.
REGISTERED, GATES_PASSED, COMPATIBLE, PROMOTED, READY = "Registered", "GatesPassed", "Compatible", "Promoted", "Ready"
WARNING_REASONS = {"DigestMismatch", "ManifestInvalid", "JobFailed", "IncompatibleAdapter", "GatesFailed",
                   "PreloadFailed", "CanaryAborted", "RolledBack", "PromotionConflict", "NotFound", "AccessDenied",
                   "CredentialsMissing", "PodsUnreachable", "AnalysisFailed"}
# When each version's analysis query last ran (in memory: a restart only runs it a little early).
_last_query: dict = {}
_last_query_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class RolledBack:
    requeue: Optional[float]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(iso: str) -> Optional[float]:
    try:
        return datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def _due(key: tuple, interval: float) -> bool:
    now = time.monotonic()
    with _last_query_lock:
        if now - _last_query.get(key, -1e18) < interval:
            return False
        _last_query[key] = now
        return True


class ModelVersionReconciler:
    def __init__(self, obj: dict, status_patch: dict, event: Event, settings: OperatorSettings, runtime=None):
        self.obj, self.out, self._emit, self.settings, self.runtime = obj, status_patch, event, settings, runtime
        self._reasons_sent: set[str] = set()
        self.meta, self.spec = obj["metadata"], obj["spec"]
        self.ns, self.name = self.meta["namespace"], self.meta["name"]
        self.generation = self.meta.get("generation", 1)
        self.status = obj.get("status") or {}
        self.model, self.version = self.spec["model"], self.spec["version"]
        self.stage = self.spec.get("stage", "candidate")
        self.target = self.spec.get("servingTarget") or {}
        self.want: dict = {}                    # status fields this pass decided
        self.conditions = list(self.status.get("conditions") or [])
        self.adapter: Optional[register.Adapter] = None
        self.store = record.Store(kube.core(), self.ns, naming.record_name(self.model), self.model)
        self._token: Optional[str] = None

    # === entry ====================================================================================
    def reconcile(self) -> Optional[float]:
        try:
            requeue = self._reconcile()
        except record.Conflict as err:
            log.debug("%s/%s: %s", self.ns, self.name, err)
            requeue = 0.2
        self._finish()
        return requeue

    def _reconcile(self) -> Optional[float]:
        registered = self._register()
        if registered is not True:
            return registered
        rec = self.store.read(create=bool(self.target or self._asks_production()))
        if rec.production == self.name:
            return self._production(rec)
        if rec.holder() == self.name:
            return self._promoting(rec)
        gates_ok = self._gates(rec)
        if self.stage == "archived":
            return self._archived()
        if self._asks_production() and rec.decision(self.name, self.generation) is None:
            if not gates_ok:
                self._phase("Registered", "GatesFailed", self._condition_message(GATES_PASSED))
                self._cond(PROMOTED, False, "GatesFailed", "not promoted: gates failed")
                self._cond(READY, False, "GatesFailed", "asks for production but its gates failed")
                return None
            return self._request(rec)
        return self._decided(rec)

    def _asks_production(self) -> bool:
        return self.stage == "production"

    # === register =================================================================================
    def _register(self):
        """True when registered (self.adapter set); else the requeue delay (or None) of a waiting/failed pass."""
        done = register.adapter_from_status(self.status, self.spec)
        if done and st.condition_status(self.conditions, REGISTERED) == "True" and done.manifest_uri:
            self.adapter = done
            return True
        if self.status.get("phase") == "Failed" and self.status.get("observedGeneration") == self.generation:
            return None  # a digest mismatch does not fix itself; a spec change (new generation) looks again
        source = self.spec["adapter"]
        job_name = (source.get("fromJob") or {}).get("name", "")
        if job_name:
            custom = kube.custom()
            job = kube.read_or_none(lambda n, **k: custom.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, "finetunejobs", n, **k), job_name)
            js = register.from_job(job, job_name)
            if js.state == "wait":
                self._phase("Pending", js.reason, js.message)
                self._cond(REGISTERED, False, js.reason, js.message)
                return 5.0
            if js.state == "failed":
                return self._register_failed(js.reason, js.message)
            candidates, digest = [js.manifest_uri], js.digest
        else:
            candidates, digest = register.manifest_candidates(source["uri"]), source["digest"]
        try:
            s3 = storage.client_for(kube.core(), self.ns, self.spec.get("credentials"))
            verified = self._verify(s3, candidates, digest)
        except storage.StorageError as err:
            if err.reason in ("S3Unavailable",):
                self._phase("Registering", err.reason, err.message)
                return 10.0
            if err.reason in ("CredentialsMissing", "AccessDenied"):
                self._phase("Registering", err.reason, err.message)
                self._cond(REGISTERED, False, err.reason, err.message)
                return 30.0
            return self._register_failed(err.reason, err.message)
        adapter = register.adapter_facts(verified.uri, verified.digest, verified.manifest, self.spec.get("baseModel"))
        self.want.update(register.registered_status(self.spec, adapter, verified.manifest, verified.files, job_name))
        self.adapter = adapter
        self._cond(REGISTERED, True, "Verified",
                   f"manifest {verified.uri} ({verified.digest}) and {len(verified.files)} file sha256s verified")
        self._phase("Registered", "Verified", f"adapter verified; served as {self.want['servedName']}")
        return True

    @staticmethod
    def _verify(s3, candidates: list, digest: str) -> storage.VerifiedManifest:
        last = None
        for uri in candidates:
            try:
                return storage.verify_manifest(s3, uri, digest)
            except storage.StorageError as err:
                if err.reason != "NotFound":
                    raise
                last = err
        raise storage.StorageError("NotFound", f"no manifest.json at {' or '.join(candidates)}: {last.message}")

    def _register_failed(self, reason: str, message: str) -> None:
        self._cond(REGISTERED, False, reason, message)
        self._cond(READY, False, reason, "not registered: nothing was loaded")
        self._phase("Failed", reason, message)
        return None

    # === gates ====================================================================================
    def _gates(self, rec: record.Record) -> bool:
        production = None
        if rec.production and rec.production != self.name:
            other = self._read_mv(rec.production)
            if other is not None:
                production = (rec.production_version or other["spec"]["version"],
                              ((other.get("status") or {}).get("lineage") or {}).get("metrics") or {})
        metrics_now = (self.want.get("lineage") or self.status.get("lineage") or {}).get("metrics") or {}
        outcome = gatesmod.evaluate(self.spec.get("gates"), metrics_now, production)
        self.want["gates"] = outcome.results
        was_failed = st.condition_status(self.conditions, GATES_PASSED) == "False" and \
            self.status.get("observedGeneration") == self.generation
        self._cond(GATES_PASSED, outcome.passed, "GatesPassed" if outcome.passed else "GatesFailed", outcome.message)
        if not outcome.passed and not was_failed:
            metrics.GATE_FAILURES.labels(self.ns, self.model).inc()
        return outcome.passed

    # === pods =====================================================================================
    def _token_value(self) -> str:
        if self._token is None:
            ref = self.target.get("adminTokenSecretRef")
            self._token = ""
            if ref:
                core = kube.core()
                secret = kube.read_or_none(lambda n, **k: core.read_namespaced_secret(n, self.ns, **k), ref["name"])
                data = (secret or {}).get("data") or {}
                if ref.get("key", "token") in data:
                    self._token = base64.b64decode(data[ref.get("key", "token")]).decode().strip()
        return self._token

    def _agent(self, pod, timeout: float = STATE_TIMEOUT) -> agent_client.Agent:
        if self.runtime is not None:
            self.runtime.fence()  # every call to a pod's agent is made only while this replica leads
        return agent_client.Agent(pod, int(self.target.get("port", 8001)), self._token_value(), timeout)

    def _views(self) -> list[PodView]:
        selector = label_selector((self.target.get("selector") or {}).get("matchLabels") or {})
        listed = kube.raw(kube.core().list_namespaced_pod(self.ns, label_selector=selector, _preload_content=False))
        pods = ready_pods(listed["items"])
        self._token_value()
        out = []
        for pod, state, err in agent_client.each(pods, lambda p: self._agent(p).state()):
            out.append(view_from_state(pod, state) if err is None else PodView(pod, error=str(err)))
        return out

    def _preload(self, views: list[PodView], adapter: register.Adapter, version: str) -> dict:
        """Preloads on those pods in parallel; {pod: error} of the ones that failed."""
        def load(v: PodView):
            return self._agent(v.pod, PRELOAD_TIMEOUT).preload(self.model, version, adapter.uri, adapter.manifest_uri,
                                                               adapter.digest)
        failures = {}
        for v, result, err in agent_client.each(views, load):
            if err is not None:
                failures[v.pod.name] = f"{err.reason}: {err.message}"
                continue
            seconds = float(result.get("seconds") or 0)
            if not result.get("alreadyLoaded"):
                metrics.ADAPTER_LOAD_SECONDS.labels(self.ns, self.model).observe(seconds)
                self.event("Normal", "AdapterPreloaded", f"pod {v.pod.name} loaded {result.get('name')} in "
                                                         f"{seconds:.2f} s")
        return failures

    def _on_all(self, views: list[PodView], call: Callable[[agent_client.Agent], dict]) -> dict:
        return {v.pod.name: f"{err.reason}: {err.message}"
                for v, _, err in agent_client.each(views, lambda v: call(self._agent(v.pod))) if err is not None}

    # === a new production request ===================================================================
    def _request(self, rec: record.Record) -> Optional[float]:
        views = self._views()
        if not views:
            self._waiting("NoServingPods", f"no ready pods match servingTarget "
                                           f"{label_selector(self.target['selector'].get('matchLabels') or {})}")
            return 5.0
        down = plan.unreachable(views)
        if down:
            self._waiting("PodsUnreachable", "cannot ask every serving pod before loading: " +
                          "; ".join(f"pod {p}: {e}" for p, e in sorted(down.items())), views)
            return 5.0
        found = compatibility.problems(self.adapter, views)
        if found:
            msg = "refused before any load: " + compatibility.message(found)
            self._cond(COMPATIBLE, False, "IncompatibleAdapter", msg)
            self._cond(PROMOTED, False, "IncompatibleAdapter", "not promoted: incompatible with the serving pods")
            self._cond(READY, False, "IncompatibleAdapter", msg)
            self._phase("Registered", "IncompatibleAdapter", msg)
            self.want["servedBy"] = served_by(views, self.model, self._served(), found)
            return 30.0
        self._cond(COMPATIBLE, True, "Compatible", f"rank, target modules and base model fit all {len(views)} pods")
        holder = rec.holder()
        if holder and holder != self.name:
            if self._read_mv(holder) is None:  # the lock's holder was deleted mid-way
                rec.promoting = {}
                self.store.write(rec)
                return 0.2
            rec.decide(self.name, self.generation, record.LOST, _now(), by=holder,
                       byVersion=rec.promoting.get("version", ""))
            self.store.write(rec)
            return self._decided(rec)
        first = record.first_in_line(record.Contender(self.name, self.meta.get("creationTimestamp", "")),
                                     self._contenders(rec))
        if first.name != self.name:
            # Decided now, not deferred: waiting for it would let this one promote right after, and two
            # versions asking at once must end with exactly one of them production.
            rec.decide(self.name, self.generation, record.LOST, _now(), by=first.name, byVersion="",
                       why="asked at the same time; the older object goes first")
            self.store.write(rec)
            return self._decided(rec)
        manual = rec.previous == self.name
        rec.promoting = {"name": self.name, "version": self.version, "generation": self.generation, "since": _now(),
                         "previous": rec.production, "previousVersion": rec.production_version,
                         "previousServedName": rec.served_name, "manual": manual}
        rec.decide(self.name, self.generation, record.PROMOTING, _now())
        rec.log(_now(), "promotionStarted", self.version)
        self.store.write(rec)
        self.event("Normal", "PromotionStarted",
                   f"promoting {self.version} ({self._served()}) to production on {len(views)} pods" +
                   (f", replacing {rec.production_version}" if rec.production_version else ""))
        return self._promoting(rec, views)

    def _contenders(self, rec: record.Record) -> list:
        custom = kube.custom()
        items = kube.raw(custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL,
                                                              _preload_content=False))["items"]
        out = []
        for mv in items:
            meta, spec, status = mv["metadata"], mv.get("spec") or {}, mv.get("status") or {}
            if meta["name"] == self.name or spec.get("model") != self.model or spec.get("stage") != "production":
                continue
            if rec.production == meta["name"] or rec.decision(meta["name"], meta.get("generation", 1)) is not None:
                continue
            conds = status.get("conditions") or []
            if status.get("phase") == "Failed" or any(
                    st.condition_status(conds, c) == "False" for c in (GATES_PASSED, COMPATIBLE)):
                continue
            out.append(record.Contender(meta["name"], meta.get("creationTimestamp", "")))
        return out

    # === promotion in progress (this version holds the lock) ========================================
    def _promoting(self, rec: record.Record, views: Optional[list] = None) -> Optional[float]:
        p = rec.promoting
        if not self._asks_production() or p.get("generation") != self.generation:
            return self._cancel(rec)
        views = views if views is not None else self._views()
        served = self._served()
        old = p.get("previousServedName", "")
        reachable = [v for v in views if v.ok]
        failures = dict(plan.unreachable(views))
        failures.update(compatibility.problems(self.adapter, reachable))
        if not reachable and not failures:
            failures["(none)"] = "no ready serving pods"
        if not failures:
            failures.update(self._preload(plan.to_preload(reachable, served), self.adapter, self.version))
        if not failures:  # verify: every pod must report it loaded
            views = self._views()
            failures.update({v.pod.name: v.error or "the agent does not report the adapter loaded after the preload"
                             for v in views if not v.ok or served not in v.loaded})
        if failures:
            return self._preload_failed(rec, views, failures)
        self._phase("Promoting", "Preloaded", f"{served} loaded on all {len(views)} pods")
        canary_spec = self.spec.get("rollout") or {}
        if canary_spec.get("strategy") == "Canary" and old and old != served and not p.get("manual"):
            return self._canary(rec, views, canary_spec, old)
        missed = self._on_all(plan.to_flip(views, self.model, served), lambda a: a.flip(self.model, served))
        if missed:
            self.want["servedBy"] = served_by(views, self.model, served, missed)
            self._phase("Promoting", "Flipping", "alias flip pending on: " +
                        "; ".join(f"{k}: {v}" for k, v in sorted(missed.items())))
            return 1.0
        return self._promoted(rec)

    def _promoted(self, rec: record.Record) -> Optional[float]:
        p, now = rec.promoting, _now()
        manual = bool(p.get("manual"))
        rec.set_production(self.name, self.version, self._served(), now)
        rec.promoting = {}
        rec.decide(self.name, self.generation, record.WON, now)
        rec.log(now, "manualRollback" if manual else "promoted", self.version)
        self.store.write(rec)
        metrics.PROMOTIONS.labels(self.ns, self.model, "succeeded").inc()
        if manual:
            metrics.ROLLBACKS.labels(self.ns, self.model, "manual").inc()
        self.want["promotedAt"] = now
        self.want["canary"] = None
        self._wake_model()
        return self._production(rec, just_promoted=True)

    def _preload_failed(self, rec: record.Record, views: list, failures: dict) -> Optional[float]:
        served = self._served()
        views = self._views()  # after the preloads: where it did load
        undo = plan.to_unload(views, self.model, served)
        self._on_all(undo, lambda a: a.unload(served))
        p = rec.promoting
        message = (f"preload failed on {len(failures)} of {len(views)} pods, nothing switched" +
                   (f"; {p.get('previousVersion')} keeps serving" if p.get("previousVersion") else "") +
                   (f"; unloaded again from {', '.join(v.pod.name for v in undo)}" if undo else "") + ": " +
                   "; ".join(f"pod {k}: {v}" for k, v in sorted(failures.items())))
        rec.promoting = {}
        rec.decide(self.name, self.generation, record.FAILED, _now(), message=message[:2000],
                   pods=dict(sorted(failures.items())[:20]))
        rec.log(_now(), "preloadFailed", self.version)
        self.store.write(rec)
        metrics.PROMOTIONS.labels(self.ns, self.model, "failed").inc()
        self._wake_model()
        return self._decided(rec)

    def _cancel(self, rec: record.Record) -> Optional[float]:
        p = rec.promoting
        old = p.get("previousServedName", "")
        if old:
            views = self._views()
            missed = self._on_all(plan.to_flip(views, self.model, old), lambda a: a.flip(self.model, old))
            if missed:
                return 1.0
        rec.promoting = {}
        rec.decide(self.name, p.get("generation", 0), record.CANCELLED, _now())
        rec.log(_now(), "promotionCancelled", self.version)
        self.store.write(rec)
        metrics.PROMOTIONS.labels(self.ns, self.model, "aborted").inc()
        self.event("Normal", "PromotionCancelled", "the spec changed during the promotion; the previous version "
                                                   "serves again")
        self._wake_model()
        return 0.2

    # --- canary -----------------------------------------------------------------------------------
    def _canary(self, rec: record.Record, views: list, rollout: dict, old: str) -> Optional[float]:
        p = rec.promoting
        steps = rollout.get("steps") or []
        spec_a = rollout.get("analysis") or {}
        step, started = p.get("step"), p.get("stepStartedAt")
        value, breach, query, seen = None, False, "", time.monotonic()
        if step is not None:
            query = analysis.render(spec_a["query"], model=self.model, version=self.version, namespace=self.ns)
            if _due((self.ns, self.name, "canary"), float(spec_a.get("intervalSeconds", 15))):
                try:
                    value = prometheus.query(spec_a.get("prometheusUrl") or self.settings.prometheus_url, query)
                except prometheus.QueryError as err:
                    self.event("Warning", "AnalysisFailed", f"canary analysis query failed: {err}")
                breach = analysis.breached(value, spec_a["threshold"], spec_a.get("comparison", "GreaterThan"))
                seen = time.monotonic()
        action = canary.next_action(steps, step, started, time.time(), breach)
        if action.kind == "abort":
            return self._canary_abort(rec, views, old, query, value, spec_a, seen)
        if action.kind == "complete":
            missed = self._on_all(plan.to_flip(views, self.model, self._served()),
                                  lambda a: a.flip(self.model, self._served()))
            if missed:
                return 1.0
            self.event("Normal", "CanaryPassed", f"all {len(steps)} canary steps passed their analysis; alias fully "
                                                 f"on {self.version}")
            return self._promoted(rec)
        weights = plan.canary_weights(self._served(), old, action.weight)
        missed = self._on_all(plan.to_weigh(views, self.model, weights), lambda a: a.weights(self.model, weights))
        self.want["servedBy"] = served_by(self._views() if not missed else views, self.model, self._served(), missed)
        if missed:
            self._phase("Promoting", "CanaryWeighting", "setting weights pending on: " +
                        "; ".join(f"{k}: {v}" for k, v in sorted(missed.items())))
            return 1.0
        if action.kind == "weigh":
            p["step"], p["stepStartedAt"] = action.step, time.time()
            self.store.write(rec)
            self.event("Normal", "CanaryStep", f"step {action.step + 1}/{len(steps)}: {action.weight} % of "
                                               f"{self.model} on {self.version}, {100 - action.weight} % on "
                                               f"{p.get('previousVersion')}")
        canary_status = {"step": p["step"], "weight": action.weight, "stepStartedAt": _iso(p["stepStartedAt"]),
                         "previousVersion": p.get("previousVersion", "")}
        if value is not None:
            canary_status["lastValue"] = value
        self.want["canary"] = canary_status
        self._phase("Promoting", "Canary", f"canary step {p['step'] + 1}/{len(steps)}: {action.weight} % on "
                                           f"{self.version}; analysis "
                                           f"{analysis.describe(value, spec_a['threshold'], spec_a.get('comparison', 'GreaterThan')) if value is not None else 'pending'}")
        interval = float(spec_a.get("intervalSeconds", 15))
        left = action.wait if action.kind == "hold" else float(steps[action.step].get("pauseSeconds", 60))
        return max(0.2, min(interval, left))

    def _canary_abort(self, rec, views, old, query, value, spec_a, seen) -> Optional[float]:
        missed = self._on_all(plan.to_flip(views, self.model, old), lambda a: a.flip(self.model, old))
        seconds = time.monotonic() - seen
        p = rec.promoting
        details = {"query": query, "value": value, "threshold": spec_a["threshold"],
                   "restoredVersion": p.get("previousVersion", ""), "trigger": "canary",
                   "seconds": round(seconds, 3)}
        rec.promoting = {}
        rec.decide(self.name, self.generation, record.ABORTED, _now(), rollback=details)
        rec.log(_now(), "canaryAborted", self.version)
        self.store.write(rec)
        metrics.PROMOTIONS.labels(self.ns, self.model, "aborted").inc()
        metrics.ROLLBACKS.labels(self.ns, self.model, "analysis").inc()
        metrics.ROLLBACK_SECONDS.labels(self.ns, self.model).observe(seconds)
        self.event("Warning", "CanaryAborted",
                   f"analysis {analysis.describe(value, spec_a['threshold'], spec_a.get('comparison', 'GreaterThan'))}"
                   f": alias back to 100 % {p.get('previousVersion')} on {len(views) - len(missed)} pods in "
                   f"{seconds:.3f} s" + (f"; still to flip: {sorted(missed)}" if missed else ""))
        self.want["rolledBackAt"] = _now()
        self.want["canary"] = None
        self._wake_model()
        return self._decided(rec)

    # === production: converge, bake window ==========================================================
    def _production(self, rec: record.Record, just_promoted: bool = False) -> Optional[float]:
        served = self._served()
        if self._asks_production() and rec.decision(self.name, self.generation) is None:
            rec.decide(self.name, self.generation, record.WON, _now())  # a spec edit of the version in effect
            self.store.write(rec)
        promoted_at = _epoch(rec.promoted_at) or time.time()
        rb = self.spec.get("rollback")
        in_bake = bool(rb) and time.time() < promoted_at + float(rb.get("bakeWindowSeconds", 300))
        if in_bake and not rec.holder():  # the previous version, or the base model if there is none
            rolled_back = self._bake_check(rec, rb)
            if rolled_back is not None:
                # This version is no longer production: converging its alias now would flip the
                # pods straight back to it.
                return rolled_back.requeue
        views = self._views()
        if rec.holder():
            # Another version is being promoted: it owns the aliases now; only keep new pods loaded.
            self._preload(plan.to_preload([v for v in views if v.ok and not compatibility.problems(
                self.adapter, [v])], served), self.adapter, self.version)
            self.want["servedBy"] = served_by(views, self.model, served)
            self._phase("Production", "PromotionInProgress",
                        f"still production while {rec.promoting.get('version')} is being promoted")
            return CONVERGE_SECONDS
        incompatible = compatibility.problems(self.adapter, [v for v in views if v.ok])
        fit = [v for v in views if v.ok and v.pod.name not in incompatible]
        skewed = skew.skewed(fit, self.model, served)
        metrics.VERSION_SKEW.labels(self.ns, self.model).set(len(skewed))
        messages = dict(incompatible)
        if skewed:
            if not just_promoted:
                self.event("Warning", "VersionSkew", f"{len(skewed)} pod(s) not on {self.version}: "
                                                     f"{skew.describe(fit, self.model, served)}; correcting")
            messages.update(self._preload(plan.to_preload(fit, served), self.adapter, self.version))
            flip = [v for v in plan.to_flip(fit, self.model, served) if v.pod.name not in messages]
            messages.update(self._on_all(flip, lambda a: a.flip(self.model, served)))
            views = self._views()
            fit = [v for v in views if v.ok and v.pod.name not in incompatible]
        left = skew.skewed(fit, self.model, served)
        metrics.VERSION_SKEW.labels(self.ns, self.model).set(len(left) + len(incompatible))
        self.want["servedBy"] = served_by(views, self.model, served, messages)
        self._cond(PROMOTED, True, "Promoted", f"production since {rec.promoted_at}")
        total = len(views)
        on = total - len(left) - len([v for v in views if not v.ok]) - len(incompatible)
        if total and on == total:
            self._cond(READY, True, "Serving", f"alias {self.model} -> {served} on all {total} pods")
        else:
            self._cond(READY, False, "Converging", f"alias {self.model} -> {served} on {on}/{total} pods" +
                       (": " + "; ".join(f"{k}: {v}" for k, v in sorted(messages.items())) if messages else ""))
        restored = (rec.history[-1:] or [{}])[0].get("event") == "rolledBack"
        self.want["canary"] = None
        self._phase("Production", "ServingAgain" if restored else "Promoted",
                    (f"serving again after {rec.history[-1].get('version')} was rolled back; " if restored else "") +
                    f"alias {self.model} -> {served} on {on}/{total} pods" +
                    (f"; bake window until {_iso(promoted_at + float(rb.get('bakeWindowSeconds', 300)))}"
                     if in_bake else ""))
        if not self._asks_production():
            self._cond(READY, True, "StillProduction", f"spec.stage is {self.stage} but no other version has "
                                                       "replaced it: the alias keeps pointing here")
        if in_bake:
            return max(0.2, min(CONVERGE_SECONDS, float(rb.get("intervalSeconds", 15))))
        return CONVERGE_SECONDS

    def _bake_check(self, rec: record.Record, rb: dict) -> Optional["RolledBack"]:
        """None while the query holds; after a breach, the rollback's outcome."""
        if not _due((self.ns, self.name, "rollback"), float(rb.get("intervalSeconds", 15))):
            return None
        query = analysis.render(rb["query"], model=self.model, version=self.version, namespace=self.ns)
        try:
            value = prometheus.query(rb.get("prometheusUrl") or self.settings.prometheus_url, query)
        except prometheus.QueryError as err:
            self.event("Warning", "AnalysisFailed", f"rollback query failed: {err}")
            return None
        comparison = rb.get("comparison", "GreaterThan")
        if not analysis.breached(value, rb["threshold"], comparison):
            return None
        return self._rollback(rec, query, value, rb)

    def _rollback(self, rec: record.Record, query: str, value: float, rb: dict) -> Optional["RolledBack"]:
        seen = time.monotonic()
        views = self._views()
        restored_name, restored_version, restored_served = rec.previous, rec.previous_version, rec.previous_served_name
        if not restored_name:  # the first version in production: back to the base model
            restored_served = next((v.base_name for v in views if v.ok and v.base_name), "")
            restored_version = BASE_VERSION
            if not restored_served:
                self.event("Warning", "RollbackImpossible", f"{query.strip()} = {value:g} breached, but there is no "
                                                            "previous version and no pod reports its base model")
                return None  # stays production; the next breach tries again
        details = {"query": query, "value": value, "threshold": rb["threshold"], "restoredVersion": restored_version,
                   "trigger": "analysis"}
        # The record first: a SIGKILL after this point leaves the restored version in charge of the pods.
        rec.decide(self.name, self.generation, record.ROLLED_BACK, _now(), rollback=details)
        rec.restore_previous(_now(), base_served=restored_served)
        rec.log(_now(), "rolledBack", self.version)
        self.store.write(rec)
        restored_mv = self._read_mv(restored_name)
        restored_adapter = register.adapter_from_status((restored_mv or {}).get("status") or {},
                                                        (restored_mv or {}).get("spec") or {})

        def flip_back(agent: agent_client.Agent):
            try:
                return agent.flip(self.model, restored_served)
            except agent_client.AgentError as err:
                if err.reason != "NotLoaded" or restored_adapter is None:
                    raise
            self._agent(agent.pod, PRELOAD_TIMEOUT).preload(self.model, restored_version, restored_adapter.uri,
                                                            restored_adapter.manifest_uri, restored_adapter.digest)
            return agent.flip(self.model, restored_served)

        missed = self._on_all(plan.to_flip(views, self.model, restored_served), flip_back)
        seconds = time.monotonic() - seen
        metrics.ROLLBACKS.labels(self.ns, self.model, "analysis").inc()
        metrics.ROLLBACK_SECONDS.labels(self.ns, self.model).observe(seconds)
        details["seconds"] = round(seconds, 3)
        self.want["rollback"] = details
        self.want["rolledBackAt"] = _now()
        comparison = rb.get("comparison", "GreaterThan")
        self.event("Warning", "RolledBack",
                   f"{query.strip()} = {analysis.describe(value, rb['threshold'], comparison)}: alias {self.model} "
                   f"back to {restored_version} on {len(views) - len(missed)}/{len(views)} pods in {seconds:.3f} s"
                   + (f"; still to flip (the restored version converges them): {sorted(missed)}" if missed else ""))
        if restored_name:
            self.runtime and self.runtime.enqueue(PLURAL, self.ns, restored_name)
        return RolledBack(self._decided(rec))

    # === everything else: how the last request was decided ===========================================
    def _decided(self, rec: record.Record) -> Optional[float]:
        # Decisions hold for the generation they were made at: a rolled-back version stays visibly
        # RolledBack until its spec changes (e.g. stage candidate), never by the operator editing it.
        d = rec.decision(self.name, self.generation) if self._asks_production() else None
        result = (d or {}).get("result")
        current = f"{rec.production_version} ({rec.production})" if rec.production else \
            f"the base model ({rec.served_name})" if rec.on_base() else "no version"
        requeue = None
        if result == record.ROLLED_BACK and rec.on_base() and not rec.holder():
            requeue = self._converge_base(rec)
        if result in (record.ROLLED_BACK, record.ABORTED):
            rb = dict(d.get("rollback") or {})
            if self.status.get("rollback") and "seconds" in self.status["rollback"] and "seconds" not in rb:
                rb["seconds"] = self.status["rollback"]["seconds"]
            self.want.setdefault("rollback", {k: v for k, v in rb.items() if v is not None})
            if not self.status.get("rolledBackAt"):
                self.want.setdefault("rolledBackAt", d.get("at"))
            reason = "CanaryAborted" if result == record.ABORTED else "RolledBack"
            shown = "no data" if rb.get("value") is None else f"{rb['value']:g}"
            restored = "the base model" if rb.get("restoredVersion") == BASE_VERSION else \
                rb.get("restoredVersion") or "the previous version"
            msg = (f"{rb.get('query', '').strip()} = {shown} crossed threshold {rb.get('threshold')}; "
                   f"{restored} serves the alias again" +
                   (f" (flipped back in {rb['seconds']} s)" if rb.get("seconds") is not None else "") +
                   "; spec is unchanged: set spec.stage to candidate or archived to acknowledge")
            self._cond(PROMOTED, False, reason, msg)
            self._cond(READY, False, reason, msg)
            self._phase("RolledBack", reason, msg)
        elif result == record.LOST:
            why = d.get("why") or "was being promoted when this version asked"
            msg = (f"ModelVersion {d.get('by')} {why}; only one version of {self.model} is promoted at a time and "
                   f"this request was refused. Production now: {current}. Set spec.stage to candidate and back to "
                   "production to ask again")
            self._cond(PROMOTED, False, "PromotionConflict", msg)
            self._cond(READY, False, "PromotionConflict", msg)
            self._phase("Registered", "PromotionConflict", msg)
        elif result == record.FAILED:
            msg = d.get("message", "preload failed")
            self._cond(PROMOTED, False, "PreloadFailed", msg)
            self._cond(READY, False, "PreloadFailed", msg)
            self._phase("Registered", "PreloadFailed", msg)
        elif result == record.CANCELLED:
            self._cond(PROMOTED, False, "PromotionCancelled", "the promotion was cancelled by a spec change")
            self._phase("Registered", "PromotionCancelled", f"promotion cancelled; production: {current}")
        elif result == record.WON:
            msg = f"superseded: {current} is production since {rec.promoted_at}; still loaded, so a revert is a flip"
            self._cond(PROMOTED, False, "Superseded", msg)
            self._cond(READY, False, "Superseded", msg)
            self._phase("Registered", "Superseded", msg)
        else:
            msg = f"registered as a candidate ({self._served()}); production: {current}"
            self._cond(PROMOTED, False, "Candidate", msg)
            self._cond(READY, True, "Registered", msg)
            self._phase("Registered", "Candidate", msg)
        if self.target and "servedBy" not in self.want:
            try:
                self.want["servedBy"] = served_by(self._views(), self.model, self._served(),
                                                  (d or {}).get("pods") if result == record.FAILED else None)
            except Exception as err:  # noqa: BLE001 - display only
                log.debug("servedBy of %s/%s: %s", self.ns, self.name, err)
        if self.status.get("canary"):
            self.want.setdefault("canary", None)
        return requeue

    def _converge_base(self, rec: record.Record) -> float:
        """After a rollback to the base model no version is production, so the rolled-back version
        keeps every pod's alias (new and restarted pods too) on the base until a version is promoted."""
        views = self._views()
        self._on_all([v for v in plan.to_flip(views, self.model, rec.served_name) if v.ok],
                     lambda a: a.flip(self.model, rec.served_name))
        return CONVERGE_SECONDS

    def _archived(self) -> Optional[float]:
        served = self._served()
        if self.target:
            views = self._views()
            self._on_all(plan.to_unload(views, self.model, served), lambda a: a.unload(served))
            self.want["servedBy"] = served_by(self._views(), self.model, served)
        self._cond(PROMOTED, False, "Archived", "archived")
        self._cond(READY, True, "Archived", "archived: unloaded from pods where no alias routes to it")
        self._phase("Archived", "Archived", f"{served} unloaded from the serving pods")
        return None

    def _waiting(self, reason: str, message: str, views: Optional[list] = None) -> None:
        self._cond(PROMOTED, False, reason, message)
        self._cond(READY, False, reason, message)
        self._phase("Registered", reason, message)
        if views is not None:
            self.want["servedBy"] = served_by(views, self.model, self._served())

    # === helpers ==================================================================================
    def _served(self) -> str:
        return self.want.get("servedName") or self.status.get("servedName") or \
            naming.served_name(self.model, self.version, self.adapter.digest)

    def _read_mv(self, name: str) -> Optional[dict]:
        custom = kube.custom()
        return kube.read_or_none(lambda n, **k: custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, n, **k), name)

    def _wake_model(self) -> None:
        if self.runtime is not None:
            self.runtime.enqueue_namespace(PLURAL, self.ns)

    def _cond(self, ctype: str, ok: bool, reason: str, message: str) -> None:
        self.conditions = st.condition(self.conditions, ctype, ok, reason, message, self.generation, _now())

    def _condition_message(self, ctype: str) -> str:
        return next((c["message"] for c in self.conditions if c["type"] == ctype), "")

    def event(self, event_type: str, reason: str, message: str) -> None:
        self._reasons_sent.add(reason)
        self._emit(event_type, reason, message)

    def _phase(self, phase: str, reason: str, message: str) -> None:
        self.want["phase"], self.want["reason"], self.want["message"] = phase, reason, message[:32000]

    def _finish(self) -> None:
        """The status patch: only fields that changed (an unchanged status writes nothing, so a pass
        does not wake itself), events for phase/reason transitions, the versions-by-stage gauge."""
        self.want["conditions"] = self.conditions
        self.want["observedGeneration"] = self.generation
        if self.target or self._asks_production():
            self.want.setdefault("productionRecord", naming.record_name(self.model))
        for key, value in self.want.items():
            if value is None and key not in self.status:
                continue
            if self.status.get(key) != value:
                self.out[key] = value
        phase = self.want.get("phase", self.status.get("phase", "Pending"))
        reason = self.want.get("reason", self.status.get("reason", ""))
        # A transition whose reason this pass already reported (with its numbers) is not told twice.
        if "phase" in self.want and (phase, reason) != (self.status.get("phase"), self.status.get("reason")) \
                and reason not in self._reasons_sent:
            self.event("Warning" if reason in WARNING_REASONS else "Normal", reason or phase,
                       self.want.get("message", ""))
        metrics.MODEL_VERSIONS.set((self.ns, self.name), namespace=self.ns, model=self.model, stage=self.stage,
                                   phase=phase)
