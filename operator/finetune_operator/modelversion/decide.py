"""Pure: one ModelVersion pass, decide(snapshot, now) -> Decision(status, actions, events, requeue).

No cluster, network or clock: everything comes in the snapshot (observe.py) and `now` (epoch seconds).
The order of a pass: register, gates, then by what the model's production record says:
- this version is production (production.py): converge every ready pod (preload, alias 100 % here,
  skew corrected) and, in the bake window, watch spec.rollback; a breach restores the previous version;
- this version holds the promotion lock: phase 1 preload everywhere (all or nothing), then the alias
  flip, or the canary steps with their analysis;
- this version asks for production with an undecided request: compatibility, then the lock (one
  promotion per model at a time; two asking at once: the older object wins);
- otherwise: status says how its last request was decided (superseded, conflict, failed, rolled back).

Record changes are actions written compare-and-swap in order with the agent calls: before the pods
are touched where a SIGKILL must leave the decision in force (the lock, a rollback), after them where
the record may only say what the pods already do (production after every flip). Status is computed
as if every action succeeds; when one fails, the reconciler decides again on the same observation
with the outcome applied (snapshot.outcome), and that second decision's status is the one written.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
from typing import Optional

from . import analysis, blind, canary, compatibility, conditions as cond, gates as gatesmod, naming, plan, \
    production, record, register, skew
from .pods import PodView, label_selector, served_by
from .snapshot import (AGENT_ACTIONS, Count, Decision, Emit, Enqueue, Flip, Preload, Report, Snapshot, Unload,
                       Weights, WriteRecord, pods_of)

CONVERGE_SECONDS = 2.0      # production versions look at their pods this often
_OK = object()              # _register: registered, go on


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: str) -> Optional[float]:
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


# === the working state of one decide call =========================================================================
class Pass:
    def __init__(self, snap: Snapshot, now: float):
        self.s, self.now, self.at = snap, now, iso(now)
        self.spec, self.status = snap.spec, snap.status
        self.ns, self.name, self.generation = snap.meta["namespace"], snap.name, snap.generation
        self.model, self.version, self.stage = self.spec["model"], self.spec["version"], self.spec["stage"]
        self.target = self.spec.get("servingTarget") or {}
        self.rec = copy.deepcopy(snap.record) if snap.record is not None else record.Record()
        self.views = list(snap.views or [])
        self.failed = snap.outcome.failed() if snap.outcome else {}
        self.conditions = copy.deepcopy(list(self.status.get("conditions") or []))
        self.want: dict = {}
        self.actions: list = []
        self.adapter: Optional[register.Adapter] = None
        self.gates_message = ""

    def asks_production(self) -> bool:
        return self.stage == "production"

    def served(self) -> str:
        return self.want.get("servedName") or self.status.get("servedName") or \
            naming.served_name(self.model, self.version, self.adapter.digest)

    def cond(self, ctype: str, ok: bool, reason: str, message: str) -> None:
        self.conditions = cond.put(self.conditions, ctype, ok, reason, message, self.generation, self.at)

    def promoted(self, ok: bool, reason: str, message: str, ready: Optional[bool] = False) -> None:
        """Promoted (which decides the phase) and, unless ready is None, Ready with the same words."""
        self.cond(cond.PROMOTED, ok, reason, message)
        if ready is not None:
            self.cond(cond.READY, ready, reason, message)

    def emit(self, event_type: str, reason: str, message: str) -> None:
        self.actions.append(Emit(event_type, reason, message))

    def count(self, metric: str, *labels, op: str = "inc", value: float = 1.0) -> None:
        self.actions.append(Count(metric, (self.ns, self.model, *labels), op, value))

    def write_record(self) -> None:
        self.actions.append(WriteRecord(copy.deepcopy(self.rec)))

    def act_on(self, action) -> None:
        """Adds an agent action (never on pods that already failed in this pass) and assumes it succeeds."""
        pods = tuple(p for p in action.pods if p.name not in self.failed)
        if not pods:
            return
        action = dataclasses.replace(action, pods=pods)
        self.actions.append(action)
        self.views = assume(self.views, action, self.model)

    def other(self, name: str) -> Optional[dict]:
        return next((o for o in self.s.others or () if o["metadata"]["name"] == name), None) if name else None


def assume(views: list, action, model: str, only: Optional[set] = None) -> list:
    """The views after an agent action succeeded on its pods (or on `only` of them)."""
    names = {p.name for p in action.pods} if only is None else only
    out = []
    for v in views:
        if v.pod.name in names and v.ok:
            v = _after(v, action, model)
        out.append(v)
    return out


def _after(v: PodView, action, model: str) -> PodView:
    aliases = dict(v.aliases)
    if isinstance(action, Preload):
        served = naming.served_name(model, action.version, action.adapter.digest)
        return dataclasses.replace(v, loaded=tuple(sorted(set(v.loaded) | {served})))
    if isinstance(action, Unload):
        return dataclasses.replace(v, loaded=tuple(n for n in v.loaded if n != action.name))
    if isinstance(action, Flip):
        aliases[model] = ((action.name, 100),)
    elif isinstance(action, Weights):
        aliases[model] = tuple(sorted((n, int(w)) for n, w in action.weights.items()))
    loaded = v.loaded if not isinstance(action, Flip) or action.restore is None else \
        tuple(sorted(set(v.loaded) | {action.name}))
    return dataclasses.replace(v, aliases=tuple(sorted(aliases.items())), loaded=loaded)


# === entry ======================================================================================================
def decide(snap: Snapshot, now: float) -> Decision:
    p = Pass(snap, now)
    requeue = _register(p)
    if requeue is _OK:
        requeue = _by_record(p)
    return _finish(p, requeue)


def _by_record(p: Pass) -> Optional[float]:
    if production.is_production(p.rec, p.name):
        return _production(p) if production.serves(p.rec, p.name, p.stage) else _not_approved(p)
    if p.rec.holder() == p.name:
        return _promoting(p)
    gates_ok = _gates(p)
    if p.stage == "archived":
        return _archived(p)
    if p.asks_production() and p.rec.decision(p.name, p.generation) is None:
        if not gates_ok:
            p.promoted(False, "GatesFailed", p.gates_message)
            return None
        return _request(p)
    return _decided(p)


def _finish(p: Pass, requeue: Optional[float]) -> Decision:
    p.want["conditions"] = p.conditions
    p.want["observedGeneration"] = p.generation
    if p.target or p.asks_production():
        p.want.setdefault("productionRecord", p.s.record_at or record.record_name(p.ns, p.model))
    phase, reason, message = cond.phase_of(p.conditions)
    p.want.update(phase=phase, reason=reason, message=message[:32000])
    told = {a.reason for a in p.actions if isinstance(a, (Emit, Report))}
    events = []
    # A transition whose reason this pass already reported (with its numbers) is not told twice.
    if (phase, reason) != (p.status.get("phase"), p.status.get("reason")) and reason not in told:
        kind = "Warning" if reason in cond.WARNING_REASONS else "Normal"
        events.append((kind, reason or phase, message))
    return Decision(status=p.want, actions=p.actions, events=events, requeue=requeue)


def changes(current: dict, desired: dict) -> dict:
    """The status merge patch: only the fields that differ (None removes a field that is there)."""
    return {k: v for k, v in desired.items()
            if not (v is None and k not in current) and current.get(k) != v}


def measured(decision: Decision, seconds: Optional[float]) -> Decision:
    """status.rollback.seconds, once act has timed the flip back."""
    rb = decision.status.get("rollback")
    if seconds is None or not rb:
        return decision
    status = {**decision.status, "rollback": {**rb, "seconds": round(seconds, 3)}}
    return dataclasses.replace(decision, status=status)


# === register ===================================================================================================
def _register(p: Pass):
    reg = p.s.registration
    if reg.state == "registered":
        p.adapter = register.adapter_from_status(p.status, p.spec)
        return _OK
    if reg.state == "unchanged":
        return None  # a digest mismatch does not fix itself; a spec change (new generation) looks again
    if reg.state == "wait":
        p.cond(cond.REGISTERED, False, reg.reason, reg.message)
        return 5.0
    if reg.state == "unavailable":
        p.cond(cond.REGISTERED, False, reg.reason, reg.message)
        return 10.0 if reg.reason == "S3Unavailable" else 30.0
    if reg.state == "failed":
        p.cond(cond.REGISTERED, False, reg.reason, reg.message)
        p.cond(cond.READY, False, reg.reason, "not registered: nothing was loaded")
        return None
    v = reg.verified
    p.adapter = register.adapter_facts(v.uri, v.digest, v.manifest, p.spec.get("baseModel"))
    p.want.update(register.registered_status(p.spec, p.adapter, v.manifest, v.files, reg.job_name))
    p.cond(cond.REGISTERED, True, "Verified",
           f"manifest {v.uri} ({v.digest}) and {len(v.files)} file sha256s verified; served as {p.served()}")
    return _OK


# === gates ======================================================================================================
def _gates(p: Pass) -> bool:
    rec, prod = p.rec, None
    other = p.other(rec.production) if rec.production != p.name else None
    if other is not None:
        prod = (rec.production_version or other["spec"]["version"],
                ((other.get("status") or {}).get("lineage") or {}).get("metrics") or {})
    metrics_now = (p.want.get("lineage") or p.status.get("lineage") or {}).get("metrics") or {}
    outcome = gatesmod.evaluate(p.spec.get("gates"), metrics_now, prod)
    p.want["gates"] = outcome.results
    was_failed = cond.status_of(p.conditions, cond.GATES_PASSED) == "False" and \
        p.status.get("observedGeneration") == p.generation
    p.cond(cond.GATES_PASSED, outcome.passed, "GatesPassed" if outcome.passed else "GatesFailed", outcome.message)
    if not outcome.passed and not was_failed:
        p.count("GATE_FAILURES")
    p.gates_message = outcome.message
    return outcome.passed


# === a new production request ===================================================================================
def _request(p: Pass) -> Optional[float]:
    views = p.views
    if not views:
        selector = label_selector((p.target.get("selector") or {}).get("matchLabels") or {})
        return _waiting(p, "NoServingPods", f"no ready pods match servingTarget {selector}")
    down = plan.unreachable(views)
    if down:
        return _waiting(p, "PodsUnreachable", "cannot ask every serving pod before loading: " +
                        "; ".join(f"pod {k}: {e}" for k, e in sorted(down.items())))
    found = compatibility.problems(p.adapter, views)
    if found:
        msg = "refused before any load: " + compatibility.message(found)
        p.cond(cond.COMPATIBLE, False, "IncompatibleAdapter", msg)
        p.promoted(False, "IncompatibleAdapter", msg)
        p.want["servedBy"] = served_by(views, p.model, p.served(), found)
        return 30.0
    p.cond(cond.COMPATIBLE, True, "Compatible", f"rank, target modules and base model fit all {len(views)} pods")
    refused = _refused_by_another(p)
    if refused is not _OK:
        return refused
    rec = p.rec
    rec.promoting = {"name": p.name, "version": p.version, "generation": p.generation, "since": p.at,
                     "previous": rec.production, "previousVersion": rec.production_version,
                     "previousServedName": rec.served_name, "manual": rec.previous == p.name}
    rec.decide(p.name, p.generation, record.PROMOTING, p.at)
    rec.log(p.at, "promotionStarted", p.version)
    p.write_record()
    p.emit("Normal", "PromotionStarted", f"promoting {p.version} ({p.served()}) to production on {len(views)} pods" +
           (f", replacing {rec.production_version}" if rec.production_version else ""))
    return _promoting(p)


def _refused_by_another(p: Pass):
    """Another version holds the lock, or asked at the same time and is older: this request loses now
    (the requeue), else _OK."""
    rec, holder = p.rec, p.rec.holder()
    if holder and holder != p.name:
        if p.s.others is not None and p.other(holder) is None:  # the lock's holder was deleted mid-way
            rec.promoting = {}
            p.write_record()
            return 0.2
        rec.decide(p.name, p.generation, record.LOST, p.at, by=holder, byVersion=rec.promoting.get("version", ""))
        p.write_record()
        return _decided(p)
    first = record.first_in_line(record.Contender(p.name, p.s.meta.get("creationTimestamp", "")), contenders(p))
    if first.name == p.name:
        return _OK
    # Decided now, not deferred: waiting for it would let this one promote right after, and two
    # versions asking at once must end with exactly one of them production.
    rec.decide(p.name, p.generation, record.LOST, p.at, by=first.name, byVersion="",
               why="asked at the same time; the older object goes first")
    p.write_record()
    return _decided(p)


def contenders(p: Pass) -> list:
    out = []
    for mv in p.s.others or ():
        meta, spec, status = mv["metadata"], mv.get("spec") or {}, mv.get("status") or {}
        if meta["name"] == p.name or spec.get("model") != p.model or spec.get("stage") != "production":
            continue
        if production.is_production(p.rec, meta["name"]) or \
                p.rec.decision(meta["name"], meta.get("generation", 1)) is not None:
            continue
        conds = status.get("conditions") or []
        if status.get("phase") == "Failed" or any(
                cond.status_of(conds, c) == "False" for c in (cond.GATES_PASSED, cond.COMPATIBLE)):
            continue
        out.append(record.Contender(meta["name"], meta.get("creationTimestamp", "")))
    return out


# === promotion in progress (this version holds the lock) ========================================================
def _promoting(p: Pass) -> Optional[float]:
    lock = p.rec.promoting
    if not p.asks_production() or lock.get("generation") != p.generation:
        return _cancel(p)
    served = p.served()
    reachable = [v for v in p.views if v.ok]
    failures = dict(plan.unreachable(p.views))
    failures.update(compatibility.problems(p.adapter, reachable))
    failures.update({v.pod.name: p.failed[v.pod.name] for v in reachable
                     if v.pod.name in p.failed and served not in v.loaded})  # this pass's preload failed there
    if not reachable and not failures:
        failures["(none)"] = "no ready serving pods"
    if failures:
        return _preload_failed(p, failures)
    p.act_on(Preload(pods_of(plan.to_preload(reachable, served)), p.adapter, p.version))
    rollout, old = p.spec.get("rollout") or {}, lock.get("previousServedName", "")
    if rollout.get("strategy") == "Canary" and old and old != served and not lock.get("manual"):
        return _canary(p, rollout, old)
    return _flip_then_promoted(p, f"{served} loaded on all {len(p.views)} pods")


def _flip_then_promoted(p: Pass, loaded: str) -> Optional[float]:
    served = p.served()
    flip = plan.to_flip(p.views, p.model, served)
    missed = {v.pod.name: p.failed[v.pod.name] for v in flip if v.pod.name in p.failed}
    if missed:
        p.want["servedBy"] = served_by(p.views, p.model, served, missed)
        p.promoted(False, "Flipping", f"{loaded}; alias flip pending on: " +
                   "; ".join(f"{k}: {v}" for k, v in sorted(missed.items())))
        return 1.0
    p.act_on(Flip(pods_of(flip), served))
    return _promoted(p)


def _promoted(p: Pass) -> Optional[float]:
    rec, lock = p.rec, p.rec.promoting
    manual, replaced = bool(lock.get("manual")), rec.production
    rec.set_production(p.name, p.version, p.served(), p.at)
    rec.promoting = {}
    rec.decide(p.name, p.generation, record.WON, p.at)
    rec.log(p.at, "manualRollback" if manual else "promoted", p.version)
    if manual and replaced in rec.decisions:
        # The version rolled back from shows why (status.rollback.trigger manual) under its own decision.
        rec.decisions[replaced] = {**rec.decisions[replaced], "rollback": {
            "trigger": "manual", "restoredVersion": p.version, "at": p.at}}
    p.write_record()
    p.count("PROMOTIONS", "succeeded")
    if manual:
        p.count("ROLLBACKS", "manual")
    p.want["canary"] = None
    p.actions.append(Enqueue())
    return _production(p)


def _preload_failed(p: Pass, failures: dict) -> Optional[float]:
    served, lock = p.served(), p.rec.promoting
    undo = plan.to_unload(p.views, p.model, served)
    p.act_on(Unload(pods_of(undo), served))
    message = (f"preload failed on {len(failures)} of {len(p.views)} pods, nothing switched" +
               (f"; {lock.get('previousVersion')} keeps serving" if lock.get("previousVersion") else "") +
               (f"; unloaded again from {', '.join(v.pod.name for v in undo)}" if undo else "") + ": " +
               "; ".join(f"pod {k}: {v}" for k, v in sorted(failures.items())))
    p.rec.promoting = {}
    p.rec.decide(p.name, p.generation, record.FAILED, p.at, message=message[:2000],
                 pods=dict(sorted(failures.items())[:20]))
    p.rec.log(p.at, "preloadFailed", p.version)
    p.write_record()
    p.count("PROMOTIONS", "failed")
    p.actions.append(Enqueue())
    return _decided(p)


def _cancel(p: Pass) -> Optional[float]:
    lock = p.rec.promoting
    old = lock.get("previousServedName", "")
    if old:
        flip = plan.to_flip(p.views, p.model, old)
        pending = {v.pod.name: p.failed[v.pod.name] for v in flip if v.pod.name in p.failed}
        if pending:
            p.promoted(False, "Cancelling", "the spec changed during the promotion; flipping back pending on: " +
                       "; ".join(f"{k}: {v}" for k, v in sorted(pending.items())))
            return 1.0
        p.act_on(Flip(pods_of(flip), old))
    p.rec.promoting = {}
    p.rec.decide(p.name, lock.get("generation", 0), record.CANCELLED, p.at)
    p.rec.log(p.at, "promotionCancelled", p.version)
    p.write_record()
    p.count("PROMOTIONS", "aborted")
    p.emit("Normal", "PromotionCancelled", "the spec changed during the promotion; the previous version serves again")
    p.actions.append(Enqueue())
    p.promoted(False, "Cancelling", "the spec changed during the promotion; deciding the new spec next")
    return 0.2


# --- canary -----------------------------------------------------------------------------------------------------
def analysis_wanted(mv: dict, rec: Optional[record.Record], now: float) -> Optional[tuple]:
    """(kind, analysis spec) when this pass must evaluate a PromQL query: a canary step of the lock
    holder (kind canary), or the bake window of the production version (kind rollback)."""
    spec, name, rec = mv["spec"], mv["metadata"]["name"], rec or record.Record()
    if rec.holder() == name:
        rollout = spec.get("rollout") or {}
        if rollout.get("strategy") == "Canary" and rec.promoting.get("step") is not None:
            return "canary", rollout["analysis"]
        return None
    if production.serves(rec, name, spec["stage"]) and not rec.holder() and \
            bake_window_open(spec, rec, now, mv.get("status")):
        return "rollback", spec["rollback"]
    return None


def bake_window_open(spec: dict, rec: record.Record, now: float, status: Optional[dict] = None) -> bool:
    """In spec.rollback's bake window, which every blind check so far (status.bakeWindow) extended."""
    rb = spec.get("rollback")
    return bool(rb) and now < bake_window_end(rb, rec, now, status)


def bake_window_end(rb: dict, rec: record.Record, now: float, status: Optional[dict] = None) -> float:
    promoted_at = epoch(rec.promoted_at) or now
    return promoted_at + float(rb["bakeWindowSeconds"]) + blind.current(status, rec.promoted_at).extended


def _canary(p: Pass, rollout: dict, old: str) -> Optional[float]:
    lock, steps, spec_a = p.rec.promoting, rollout.get("steps") or [], rollout["analysis"]
    a = p.s.analysis if lock.get("step") is not None else None
    if a is not None and a.error:
        p.emit("Warning", "AnalysisFailed", f"canary analysis query failed: {a.error}")
    breach = a is not None and analysis.breached(a.value, spec_a["threshold"], spec_a["comparison"])
    step = canary.next_action(steps, lock.get("step"), lock.get("stepStartedAt"), p.now, breach)
    if step.kind == "abort":
        return _canary_abort(p, old, a, spec_a)
    if step.kind == "complete":
        if not any(v.pod.name in p.failed for v in plan.to_flip(p.views, p.model, p.served())):
            p.emit("Normal", "CanaryPassed", f"all {len(steps)} canary steps passed their analysis; alias fully "
                                             f"on {p.version}")
        return _flip_then_promoted(p, f"all {len(steps)} canary steps passed")
    weights = plan.canary_weights(p.served(), old, step.weight)
    to_weigh = plan.to_weigh(p.views, p.model, weights)
    missed = {v.pod.name: p.failed[v.pod.name] for v in to_weigh if v.pod.name in p.failed}
    if missed:
        p.want["servedBy"] = served_by(p.views, p.model, p.served(), missed)
        p.promoted(False, "CanaryWeighting", "setting weights pending on: " +
                   "; ".join(f"{k}: {v}" for k, v in sorted(missed.items())))
        return 1.0
    p.act_on(Weights(pods_of(to_weigh), weights))
    if step.kind == "weigh":
        lock["step"], lock["stepStartedAt"] = step.step, p.now
        p.write_record()
        p.emit("Normal", "CanaryStep", f"step {step.step + 1}/{len(steps)}: {step.weight} % of {p.model} on "
                                       f"{p.version}, {100 - step.weight} % on {lock.get('previousVersion')}")
    return _canary_status(p, steps, spec_a, step, a)


def _canary_status(p: Pass, steps: list, spec_a: dict, step: canary.Action, a) -> float:
    lock = p.rec.promoting
    last = a.value if a is not None else (p.status.get("canary") or {}).get("lastValue")
    shown = analysis.describe(last, spec_a["threshold"], spec_a["comparison"]) if last is not None else "pending"
    p.want["canary"] = {"step": lock["step"], "weight": step.weight, "stepStartedAt": iso(lock["stepStartedAt"]),
                        "previousVersion": lock.get("previousVersion", ""),
                        **({"lastValue": last} if last is not None else {})}
    p.want["servedBy"] = served_by(p.views, p.model, p.served())
    p.promoted(False, "Canary", f"canary step {lock['step'] + 1}/{len(steps)}: {step.weight} % on {p.version}; "
                                f"analysis {shown}")
    interval = float(spec_a["intervalSeconds"])
    left = step.wait if step.kind == "hold" else float(steps[step.step].get("pauseSeconds", 60))
    return max(0.2, min(interval, left))


def _canary_abort(p: Pass, old: str, a, spec_a: dict) -> Optional[float]:
    lock = p.rec.promoting
    total = len(p.views)
    p.act_on(Flip(pods_of(plan.to_flip(p.views, p.model, old)), old, all_or_nothing=False, measure="canary"))
    details = {"query": a.query, "value": a.value, "threshold": spec_a["threshold"],
               "restoredVersion": lock.get("previousVersion", ""), "trigger": "canary"}
    described = analysis.describe(a.value, spec_a["threshold"], spec_a["comparison"])
    p.actions.append(Report("Warning", "CanaryAborted",
                            f"analysis {described}: alias back to 100 % {lock.get('previousVersion')}", total))
    p.rec.promoting = {}
    p.rec.decide(p.name, p.generation, record.ABORTED, p.at, rollback=details)
    p.rec.log(p.at, "canaryAborted", p.version)
    p.write_record()
    p.count("PROMOTIONS", "aborted")
    p.count("ROLLBACKS", "analysis")
    p.want["rollback"] = {k: v for k, v in details.items() if v is not None}
    p.want["rolledBackAt"] = p.at
    p.want["canary"] = None
    p.actions.append(Enqueue())
    return _decided(p)


# === production: converge, bake window ==========================================================================
def _production(p: Pass) -> Optional[float]:
    rec = p.rec
    if p.asks_production() and rec.decision(p.name, p.generation) is None:
        rec.decide(p.name, p.generation, record.WON, p.at)  # a spec edit of the version in effect
        p.write_record()
    rb = p.spec.get("rollback")
    in_bake = bake_window_open(p.spec, rec, p.now, p.status)
    a = p.s.analysis
    if in_bake and not rec.holder() and a is not None:
        rolled_back = _bake_check(p, a, rb)
        if rolled_back is not _OK:
            # No longer production: converging its alias now would flip the pods straight back to it.
            return rolled_back
    p.want["promotedAt"] = rec.promoted_at
    if rec.holder():
        # Another version is being promoted: it owns the aliases now; only keep new pods loaded.
        fit = [v for v in p.views if v.ok and not compatibility.problems(p.adapter, [v])]
        p.act_on(Preload(pods_of(plan.to_preload(fit, p.served())), p.adapter, p.version, all_or_nothing=False))
        p.want["servedBy"] = served_by(p.views, p.model, p.served())
        p.promoted(True, "PromotionInProgress",
                   f"still production while {rec.promoting.get('version')} is being promoted", ready=None)
        return CONVERGE_SECONDS
    _converge(p, in_bake)
    if in_bake:
        return max(0.2, min(CONVERGE_SECONDS, float(rb["intervalSeconds"])))
    return CONVERGE_SECONDS


def _bake_check(p: Pass, a, rb: dict):
    """One bake-window answer: a breach rolls back; a blind check (no answer, or no data) counts in
    status.bakeWindow and extends the window; maxBlindChecks in a row apply spec.rollback.onBlind
    (fail closed, blind.py). Events repeat word for word, so runtime/events.py folds them into one."""
    window = blind.after_check(blind.current(p.status, p.rec.promoted_at), a, float(rb["intervalSeconds"]))
    p.want["bakeWindow"] = blind.status_of(window, iso(bake_window_end(rb, p.rec, p.now, {
        "bakeWindow": blind.status_of(window, "")})))
    if not blind.is_blind(a):
        if cond.status_of(p.conditions, blind.CONDITION) == "True":
            p.cond(blind.CONDITION, False, "DataSeen", "the rollback query answers with data again")
        return _rollback(p, a, rb) if analysis.breached(a.value, rb["threshold"], rb["comparison"]) else _OK
    limit, on_blind = int(rb.get("maxBlindChecks") or blind.DEFAULT_MAX), rb.get("onBlind") or "Rollback"
    if blind.exhausted(window, rb) and on_blind != "Hold":
        return _rollback(p, a, rb, trigger="blind", blind_checks=window.blind_checks)
    p.emit("Warning", "AnalysisFailed" if a.error else "AnalysisNoData",
           f"rollback query blind: {blind.why(a)}; the bake window is extended while blind, and after {limit} "
           f"blind checks in a row spec.rollback.onBlind {on_blind} applies")
    if blind.exhausted(window, rb):
        p.cond(blind.CONDITION, True, "Blind", f"{window.blind_checks} rollback checks in a row saw nothing "
               f"({blind.why(a)}); holding (spec.rollback.onBlind Hold): still serving, the bake window does not "
               "end while blind")
    return _OK


def _converge(p: Pass, in_bake: bool) -> None:
    served, rec = p.served(), p.rec
    incompatible = compatibility.problems(p.adapter, [v for v in p.views if v.ok])
    fit = [v for v in p.views if v.ok and v.pod.name not in incompatible]
    if skew.skewed(fit, p.model, served) and not p.failed:
        p.emit("Warning", "VersionSkew", f"{len(skew.skewed(fit, p.model, served))} pod(s) not on {p.version}: "
                                         f"{skew.describe(fit, p.model, served)}; correcting")
    p.act_on(Preload(pods_of(plan.to_preload(fit, served)), p.adapter, p.version, all_or_nothing=False))
    fit = [v for v in p.views if v.ok and v.pod.name not in incompatible]
    p.act_on(Flip(pods_of(plan.to_flip(fit, p.model, served)), served, all_or_nothing=False))
    fit = [v for v in p.views if v.ok and v.pod.name not in incompatible]
    left = skew.skewed(fit, p.model, served)
    p.count("VERSION_SKEW", op="set", value=len(left) + len(incompatible))
    messages = {**incompatible, **p.failed}
    p.want["servedBy"] = served_by(p.views, p.model, served, messages)
    total = len(p.views)
    on = total - len(left) - len([v for v in p.views if not v.ok]) - len(incompatible)
    if total and on == total:
        p.cond(cond.READY, True, "Serving", f"alias {p.model} -> {served} on all {total} pods")
    else:
        p.cond(cond.READY, False, "Converging", f"alias {p.model} -> {served} on {on}/{total} pods" +
               (": " + "; ".join(f"{k}: {v}" for k, v in sorted(messages.items())) if messages else ""))
    restored = (rec.history[-1:] or [{}])[0].get("event") == "rolledBack"
    bake = p.spec.get("rollback")
    p.want["canary"] = None
    p.promoted(True, "ServingAgain" if restored else "Promoted",
               (f"serving again after {rec.history[-1].get('version')} was rolled back; " if restored else "") +
               f"alias {p.model} -> {served} on {on}/{total} pods" +
               (f"; bake window until {iso(bake_window_end(bake, rec, p.now, p.want if 'bakeWindow' in p.want else p.status))}"
                if in_bake and epoch(rec.promoted_at) else ""), ready=None)


def _rollback(p: Pass, a, rb: dict, trigger: str = "analysis", blind_checks: int = 0):
    rec = p.rec
    # A previous version demoted or archived since (or deleted) is not served again: the base instead.
    restorable = bool(rec.previous) and _restorable(p)
    restored_name, restored_version, restored_served = \
        (rec.previous, rec.previous_version, rec.previous_served_name) if restorable else ("", "", "")
    if not restored_name:  # the first version in production: back to the base model
        restored_served = next((v.base_name for v in p.views if v.ok and v.base_name), "")
        restored_version = production.BASE_VERSION
        if not restored_served:
            p.emit("Warning", "RollbackImpossible", f"{a.query.strip()}: " + (
                f"{blind_checks} blind checks in a row" if trigger == "blind" else f"{a.value:g} breached") +
                ", but there is no previous version and no pod reports its base model")
            return _OK  # stays production; the next breach tries again
    details = {"query": a.query, "value": a.value, "threshold": rb["threshold"],
               "restoredVersion": restored_version, "trigger": trigger,
               **({"blindChecks": blind_checks} if trigger == "blind" else {})}
    # The record first: a SIGKILL after this point leaves the restored version in charge of the pods.
    rec.decide(p.name, p.generation, record.ROLLED_BACK, p.at, rollback=details)
    if not restorable:
        rec.previous = rec.previous_version = rec.previous_served_name = ""
    rec.restore_previous(p.at, base_served=restored_served)
    rec.log(p.at, "rolledBack", p.version)
    p.write_record()
    other = p.other(restored_name) or {}
    adapter = register.adapter_from_status(other.get("status") or {}, other.get("spec") or {})
    total = len(p.views)
    p.act_on(Flip(pods_of(plan.to_flip(p.views, p.model, restored_served)), restored_served,
                  restore=(adapter, restored_version) if adapter else None, all_or_nothing=False, measure="rollback"))
    p.count("ROLLBACKS", trigger)
    seen = f"{blind_checks} checks in a row saw nothing ({blind.why(a)}; spec.rollback.onBlind Rollback)" \
        if trigger == "blind" else analysis.describe(a.value, rb["threshold"], rb["comparison"])
    p.actions.append(Report("Warning", "RolledBack", f"{a.query.strip()}: {seen}: alias {p.model} "
                            f"back to {restored_version}", total))
    p.want["rollback"] = {k: v for k, v in details.items() if v is not None}
    p.want["rolledBackAt"] = p.at
    if restored_name:
        p.actions.append(Enqueue(restored_name))
    return _decided(p)


def _restorable(p: Pass) -> bool:
    """The previous version is restored only while its own spec.stage still says production."""
    other = p.other(p.rec.previous)
    return other is not None and (other.get("spec") or {}).get("stage") == "production"


def _not_approved(p: Pass) -> Optional[float]:
    """The record names this version but its spec.stage is not production (demoted or archived since,
    or a record nobody approved): it is not served, so nothing is preloaded or flipped for it."""
    if p.target:
        p.want["servedBy"] = served_by(p.views, p.model, p.served())
    p.want["canary"] = None
    p.promoted(False, "NotApproved",
               f"the production record names this version but spec.stage is {p.stage}: the operator serves a "
               "version only when both say production, so nothing is loaded or flipped for it (pods whose alias "
               "still routes here keep it until another version is promoted); set spec.stage to production "
               "(promoter group) to serve it again, or promote another version")
    return None


# === everything else: how the last request was decided ==========================================================
def _decided(p: Pass) -> Optional[float]:
    # Decisions hold for the generation they were made at: a rolled-back version stays visibly
    # RolledBack until its spec changes (e.g. stage candidate), never by the operator editing it.
    rec = p.rec
    d = rec.decision(p.name, p.generation) if p.asks_production() else None
    result = (d or {}).get("result")
    requeue = None
    if result == record.ROLLED_BACK and rec.on_base() and not rec.holder():
        # No version is production after a rollback to the base model: this one keeps every pod's
        # alias (new and restarted pods too) on the base until a version is promoted.
        p.act_on(Flip(pods_of(plan.to_flip(p.views, p.model, rec.served_name)), rec.served_name,
                      all_or_nothing=False))
        requeue = CONVERGE_SECONDS
    if result in (record.ROLLED_BACK, record.ABORTED):
        _rolled_back_status(p, d, result)
    else:
        _other_status(p, d, result)
    if p.target and "servedBy" not in p.want:
        p.want["servedBy"] = served_by(p.views, p.model, p.served(),
                                       (d or {}).get("pods") if result == record.FAILED else None)
    if p.status.get("canary"):
        p.want.setdefault("canary", None)
    return requeue


def _rolled_back_status(p: Pass, d: dict, result: str) -> None:
    rb = dict(d.get("rollback") or {})
    old = p.status.get("rollback") or {}
    if "seconds" in old and "seconds" not in rb and old.get("trigger") == rb.get("trigger"):
        rb["seconds"] = old["seconds"]
    p.want.setdefault("rollback", {k: v for k, v in rb.items() if v is not None})
    if not p.status.get("rolledBackAt"):
        p.want.setdefault("rolledBackAt", d.get("at"))
    shown = "no data" if rb.get("value") is None else f"{rb['value']:g}"
    restored = "the base model" if rb.get("restoredVersion") == production.BASE_VERSION else \
        rb.get("restoredVersion") or "the previous version"
    seconds = p.want["rollback"].get("seconds")
    seen = f"{rb.get('blindChecks')} checks in a row had no answer or no data (spec.rollback.onBlind Rollback: " \
        "fail closed)" if rb.get("trigger") == "blind" else f"{shown} crossed threshold {rb.get('threshold')}"
    p.promoted(False, "CanaryAborted" if result == record.ABORTED else "RolledBack",
               f"{rb.get('query', '').strip()} = {seen}; "
               f"{restored} serves the alias again" + (f" (flipped back in {seconds} s)" if seconds is not None else "")
               + "; spec is unchanged: set spec.stage to candidate or archived to acknowledge")


def _other_status(p: Pass, d: Optional[dict], result: Optional[str]) -> None:
    rec, current = p.rec, production.describe(p.rec)
    if result == record.LOST:
        why = d.get("why") or "was being promoted when this version asked"
        p.promoted(False, "PromotionConflict",
                   f"ModelVersion {d.get('by')} {why}; only one version of {p.model} is promoted at a time and this "
                   f"request was refused. Production now: {current}. Set spec.stage to candidate and back to "
                   "production to ask again")
    elif result == record.FAILED:
        p.promoted(False, "PreloadFailed", d.get("message", "preload failed"))
    elif result == record.CANCELLED:
        p.promoted(False, "PromotionCancelled", f"promotion cancelled by a spec change; production: {current}")
    elif result == record.WON:
        manual = d.get("rollback") or {}
        if manual:
            p.want["rollback"] = {"restoredVersion": manual["restoredVersion"], "trigger": "manual"}
            p.want["rolledBackAt"] = manual["at"]
        p.promoted(False, "Superseded", f"superseded: {current} is production since {rec.promoted_at}" +
                   (" (a manual rollback)" if manual else "") + "; still loaded, so a revert is a flip")
    else:
        p.promoted(False, "Candidate", f"registered as a candidate ({p.served()}); production: {current}", ready=None)
        p.cond(cond.READY, True, "Registered", f"registered as a candidate ({p.served()}); production: {current}")


def _archived(p: Pass) -> Optional[float]:
    served = p.served()
    if p.target:
        p.act_on(Unload(pods_of(plan.to_unload(p.views, p.model, served)), served))
        p.want["servedBy"] = served_by(p.views, p.model, served)
    p.promoted(False, cond.ARCHIVED, f"{served} unloaded from the serving pods", ready=None)
    p.cond(cond.READY, True, cond.ARCHIVED, "archived: unloaded from pods where no alias routes to it")
    return None


def _waiting(p: Pass, reason: str, message: str) -> float:
    p.promoted(False, reason, message)
    if p.views:
        p.want["servedBy"] = served_by(p.views, p.model, p.served())
    return 5.0


__all__ = ["AGENT_ACTIONS", "CONVERGE_SECONDS", "analysis_wanted", "assume", "bake_window_open", "changes",
           "decide", "measured"]
