"""decide(snapshot, now): every ModelVersion transition of docs/modelversion.md, one named row each.

Each row is (behaviour, snapshot, check); the check reads the Decision only (status fields, the
actions in order, events, requeue). No cluster, network or clock is touched (see test_decide_is_pure).
"""
from __future__ import annotations

import copy
import socket
import time

import pytest

from finetune_operator.modelversion import conditions as cond, decide as d, record
from finetune_operator.modelversion.snapshot import (Analysis, Count, Emit, Enqueue, Flip, Outcome, Preload,
                                                     Registration, Report, Unload, Weights, WriteRecord)

from mv_fixtures import (AT, BASE_NAME, NOW, Verified, digest, lock, mv, on, pod, rec, registered_status,
                      served, snap, won)

ERRORS = "sum(rate(errors{version=\"$version\"}[1m]))"
CANARY = {"strategy": "Canary", "steps": [{"weight": 20, "pauseSeconds": 60}, {"weight": 50, "pauseSeconds": 30}],
          "analysis": {"query": ERRORS, "threshold": 0.5, "intervalSeconds": 5}}
BAKE = {"query": ERRORS, "threshold": 0.5, "intervalSeconds": 1, "bakeWindowSeconds": 600}
RECENT = "2027-01-15T07:59:00Z"     # promoted a minute before NOW: inside a 600 s bake window


# --- reading a Decision ----------------------------------------------------------------------------------------
def phase(dec):
    return dec.status["phase"], dec.status["reason"]


def kinds(dec):
    return [type(a).__name__ for a in dec.actions]


def of(dec, kind):
    return [a for a in dec.actions if isinstance(a, kind)]


def pods_in(action):
    return sorted(p.name for p in action.pods)


def written(dec) -> record.Record:
    return of(dec, WriteRecord)[-1].record


def condition(dec, ctype):
    return cond.get(dec.status["conditions"], ctype)


def counted(dec, metric, *labels):
    return [c for c in of(dec, Count) if c.metric == metric and c.labels[2:] == labels]


def emitted(dec, reason):
    return [a for a in dec.actions if isinstance(a, (Emit, Report)) and a.reason == reason]


def check_all(*checks):
    def run(dec):
        for c in checks:
            c(dec)
    return run


# --- register -----------------------------------------------------------------------------------------------------
def verified():
    manifest = {"lora": {"r": 4, "targetModules": ["q_proj"]}, "baseModel": {"name": BASE_NAME},
                "metrics": {"eval_loss": 1.2}, "files": [{"name": "adapter/a.safetensors", "sha256": "0" * 64}]}
    return Registration("verified", verified=Verified("s3://b/v1/manifest.json", digest("v1"), manifest,
                                                      [{"name": "adapter/a.safetensors", "sha256": "0" * 64,
                                                        "size": 3}]))


def _registered_candidate(dec):
    assert phase(dec) == ("Registered", "Candidate")
    assert dec.status["servedName"] == served("v1")
    assert dec.status["adapter"]["rank"] == 4 and dec.status["lineage"]["metrics"] == {"eval_loss": 1.2}
    assert condition(dec, "Registered")["status"] == "True"
    assert not of(dec, (Preload, Flip, WriteRecord))


def _waits_for_job(dec):
    assert phase(dec) == ("Pending", "WaitingForJob") and dec.requeue == 5.0 and not dec.actions


def _digest_mismatch(dec):
    assert phase(dec) == ("Failed", "DigestMismatch") and dec.requeue is None and not dec.actions
    assert condition(dec, "Ready")["status"] == "False"


def _s3_down(dec):
    assert phase(dec) == ("Registering", "S3Unavailable") and dec.requeue == 10.0


FAILED = {"observedGeneration": 1, "phase": "Failed", "reason": "DigestMismatch", "message": "bad",
          "conditions": [{"type": "Registered", "status": "False", "reason": "DigestMismatch", "message": "bad",
                          "observedGeneration": 1, "lastTransitionTime": AT}]}

# --- gates, compatibility, the request -------------------------------------------------------------------------
TWO = [pod("pod-a"), pod("pod-b")]


def _gates_failed(dec):
    assert phase(dec) == ("Registered", "GatesFailed") and "eval_loss 1 > max 0.5" in dec.status["message"]
    assert condition(dec, "GatesPassed")["status"] == "False"
    assert counted(dec, "GATE_FAILURES") and not of(dec, (Preload, Flip, WriteRecord))


def _gate_failure_counted_once(dec):
    assert phase(dec) == ("Registered", "GatesFailed") and not counted(dec, "GATE_FAILURES")


def _must_beat_production(dec):
    gate = next(g for g in dec.status["gates"] if g["metric"] == "eval_loss (vs production)")
    assert not gate["passed"] and "vs production v1 0.9" in gate["message"]


def _no_pods(dec):
    assert phase(dec) == ("Registered", "NoServingPods") and dec.requeue == 5.0 and not dec.actions


def _unreachable(dec):
    assert phase(dec) == ("Registered", "PodsUnreachable") and "pod pod-b: AgentUnreachable" in dec.status["message"]
    assert not dec.actions


def _incompatible(dec):
    assert phase(dec) == ("Registered", "IncompatibleAdapter") and dec.requeue == 30.0
    assert "adapter rank 4 exceeds the engine's max LoRA rank 2" in dec.status["message"]
    assert condition(dec, "Compatible")["status"] == "False" and not dec.actions


def _two_phase_promotion(dec):
    assert kinds(dec) == ["WriteRecord", "Emit", "Preload", "Flip", "WriteRecord", "Count", "Enqueue", "Count"]
    lock_write, done = of(dec, WriteRecord)
    assert lock_write.record.holder() == "bot-v1" and done.record.production == "bot-v1"
    assert not done.record.promoting and done.record.decision("bot-v1", 1)["result"] == "won"
    assert pods_in(of(dec, Preload)[0]) == pods_in(of(dec, Flip)[0]) == ["pod-a", "pod-b"]
    assert phase(dec) == ("Production", "Promoted") and dec.status["promotedAt"] == AT
    assert condition(dec, "Ready")["status"] == "True" and counted(dec, "PROMOTIONS", "succeeded")
    assert all(r["loaded"] and r["weight"] == 100 for r in dec.status["servedBy"])


def _replaces_production(dec):
    done = written(dec)
    assert (done.production, done.previous) == ("bot-v2", "bot-v1")
    assert of(dec, Preload)[0].pods and of(dec, Flip)[0].name == served("v2")
    assert emitted(dec, "PromotionStarted")[0].message.endswith("replacing v1")


def _lost_to_holder(dec):
    assert phase(dec) == ("Registered", "PromotionConflict") and "bot-v3" in dec.status["message"]
    assert written(dec).decision("bot-v2", 1)["result"] == "lost" and not of(dec, (Preload, Flip))


def _holder_deleted(dec):
    assert kinds(dec) == ["WriteRecord"] and not written(dec).promoting and dec.requeue == 0.2


def _older_contender_wins(dec):
    assert phase(dec) == ("Registered", "PromotionConflict")
    assert written(dec).decision("bot-v2", 1)["by"] == "bot-v1" and not of(dec, Preload)


CONTENDER = mv("v1", status=registered_status("v1"), created="2026-12-01T00:00:00Z")

# --- preload, flip, cancel ---------------------------------------------------------------------------------------
HOLDING = rec("v1", promoting=lock("v2", "v1"), decisions={**won("v1"), "bot-v2": {
    "generation": 1, "result": "promoting", "at": AT}})
ON_V1 = [pod("pod-a", served("v1"), alias=on("v1")), pod("pod-b", served("v1"), alias=on("v1"))]


def _preload_failed(dec):
    assert kinds(dec) == ["Unload", "WriteRecord", "Count", "Enqueue"]
    assert pods_in(of(dec, Unload)[0]) == ["pod-a"]
    assert written(dec).decision("bot-v2", 1)["result"] == "failed" and not written(dec).promoting
    assert phase(dec) == ("Registered", "PreloadFailed")
    assert "pod pod-b: AccessDenied: no" in dec.status["message"] and "v1 keeps serving" in dec.status["message"]
    row = next(r for r in dec.status["servedBy"] if r["pod"] == "pod-b")
    assert not row["loaded"] and "AccessDenied" in row["message"]


def _flip_missed(dec):
    assert phase(dec) == ("Promoting", "Flipping") and dec.requeue == 1.0
    assert "pod-b: AgentUnreachable: timeout" in dec.status["message"] and not dec.actions


def _cancelled(dec):
    assert kinds(dec)[:2] == ["Flip", "WriteRecord"] and of(dec, Flip)[0].name == served("v1")
    assert written(dec).decisions["bot-v2"]["result"] == "cancelled" and not written(dec).promoting
    assert emitted(dec, "PromotionCancelled") and dec.requeue == 0.2


# --- canary -------------------------------------------------------------------------------------------------------
LOADED_BOTH = [pod(n, served("v1"), served("v2"), alias=on("v1")) for n in ("pod-a", "pod-b")]
SPLIT = [pod(n, served("v1"), served("v2"), alias={served("v2"): 20, served("v1"): 80}) for n in ("pod-a", "pod-b")]


def canary_rec(step=None, started=None):
    extra = {} if step is None else {"step": step, "stepStartedAt": started}
    return rec("v1", promoting=lock("v2", "v1", **extra), decisions=won("v1"))


def _first_step(dec):
    assert kinds(dec)[:3] == ["Weights", "WriteRecord", "Emit"]
    assert of(dec, Weights)[0].weights == {served("v2"): 20, served("v1"): 80}
    assert written(dec).promoting["step"] == 0 and written(dec).promoting["stepStartedAt"] == NOW
    assert phase(dec) == ("Promoting", "Canary") and dec.status["canary"]["weight"] == 20
    assert dec.requeue == 5.0


def _step_holds(dec):
    assert not of(dec, (Weights, WriteRecord)) and phase(dec) == ("Promoting", "Canary")
    assert dec.status["canary"]["lastValue"] == 0.1 and dec.requeue == 5.0


def _next_step(dec):
    assert of(dec, Weights)[0].weights == {served("v2"): 50, served("v1"): 50}
    assert written(dec).promoting["step"] == 1 and dec.status["canary"]["step"] == 1


def _canary_passed(dec):
    assert emitted(dec, "CanaryPassed") and of(dec, Flip)[0].name == served("v2")
    assert written(dec).production == "bot-v2" and phase(dec) == ("Production", "Promoted")


def _canary_aborted(dec):
    flip = of(dec, Flip)[0]
    assert (flip.name, flip.measure, pods_in(flip)) == (served("v1"), "canary", ["pod-a", "pod-b"])
    assert written(dec).decision("bot-v2", 1)["result"] == "aborted" and not written(dec).promoting
    assert phase(dec) == ("RolledBack", "CanaryAborted")
    rb = dec.status["rollback"]
    assert (rb["trigger"], rb["value"], rb["restoredVersion"]) == ("canary", 0.9, "v1")
    assert dec.status["canary"] is None and dec.status["rolledBackAt"] == AT
    assert counted(dec, "PROMOTIONS", "aborted") and counted(dec, "ROLLBACKS", "analysis")
    assert emitted(dec, "CanaryAborted") and not [e for e in dec.events if e[1] == "CanaryAborted"]


def _no_data_is_not_a_breach(dec):
    assert phase(dec) == ("Promoting", "Canary") and not of(dec, Flip)


# --- production: converge, skew, bake, rollback --------------------------------------------------------------------
def _converges_a_new_pod(dec):
    assert pods_in(of(dec, Preload)[0]) == ["pod-c"] and pods_in(of(dec, Flip)[0]) == ["pod-c"]
    assert condition(dec, "Ready")["reason"] == "Serving" and phase(dec) == ("Production", "Promoted")
    assert dec.requeue == d.CONVERGE_SECONDS and len(dec.status["servedBy"]) == 3


def _skew_corrected(dec):
    assert "pod-b -> " + served("v0") in emitted(dec, "VersionSkew")[0].message
    assert pods_in(of(dec, Flip)[0]) == ["pod-b"] and not of(dec, Preload)
    assert [c.value for c in of(dec, Count) if c.metric == "VERSION_SKEW"] == [0]


def _promotion_in_progress(dec):
    assert phase(dec) == ("Production", "PromotionInProgress") and pods_in(of(dec, Preload)[0]) == ["pod-c"]
    assert not of(dec, Flip)


def _bake_holds(dec):
    assert phase(dec) == ("Production", "Promoted") and "bake window until" in dec.status["message"]
    assert dec.requeue == 1.0 and not of(dec, WriteRecord)


def _rolled_back(dec):
    assert kinds(dec)[0] == "WriteRecord"  # the record first, then the pods
    after = written(dec)
    assert (after.production, after.previous) == ("bot-v1", "")
    assert after.decision("bot-v2", 1)["result"] == "rolledBack"
    flip = of(dec, Flip)[0]
    assert (flip.name, flip.measure, flip.restore[1]) == (served("v1"), "rollback", "v1")
    assert phase(dec) == ("RolledBack", "RolledBack") and condition(dec, "Ready")["status"] == "False"
    assert dec.status["rollback"] == {"query": ERRORS, "value": 0.9, "threshold": 0.5, "restoredVersion": "v1",
                                      "trigger": "analysis"}
    assert Enqueue("bot-v1") in dec.actions and emitted(dec, "RolledBack")


def _rolled_back_to_base(dec):
    after = written(dec)
    assert after.on_base() and after.served_name == BASE_NAME and of(dec, Flip)[0].name == BASE_NAME
    assert dec.status["rollback"]["restoredVersion"] == "base"
    assert "the base model serves the alias again" in dec.status["message"]


def _rollback_impossible(dec):
    assert emitted(dec, "RollbackImpossible") and phase(dec) == ("Production", "Promoted")
    assert not of(dec, WriteRecord)


def _analysis_failed(dec):
    assert emitted(dec, "AnalysisFailed") and phase(dec) == ("Production", "Promoted")


def _serving_again(dec):
    assert phase(dec) == ("Production", "ServingAgain") and "after v2 was rolled back" in dec.status["message"]


def _rolled_back_keeps_base(dec):
    assert phase(dec) == ("RolledBack", "RolledBack") and of(dec, Flip)[0].name == BASE_NAME
    assert pods_in(of(dec, Flip)[0]) == ["pod-b"] and dec.requeue == d.CONVERGE_SECONDS


def _not_served(dec):
    # The record alone is not enough: nothing is loaded, flipped or unloaded, and status says why.
    assert not [a for a in dec.actions if isinstance(a, (Preload, Flip, Weights, Unload, WriteRecord))]
    assert phase(dec) == ("Registered", "NotApproved") and condition(dec, "Ready")["status"] == "False"
    assert "spec.stage is" in dec.status["message"] and "promoter group" in dec.status["message"]
    assert dec.events and dec.events[0][:2] == ("Warning", "NotApproved")


def _rolled_back_to_base_past_a_demoted_previous(dec):
    after = written(dec)
    assert after.on_base() and (after.previous, after.production) == ("", "") and after.served_name == BASE_NAME
    assert of(dec, Flip)[0].name == BASE_NAME and of(dec, Flip)[0].restore is None
    assert dec.status["rollback"]["restoredVersion"] == "base" and Enqueue("bot-v1") not in dec.actions


def _spec_edit_keeps_production(dec):
    assert written(dec).decision("bot-v1", 2)["result"] == "won" and phase(dec)[0] == "Production"


# --- decided requests, manual rollback, archive ------------------------------------------------------------------
def _superseded(dec):
    assert phase(dec) == ("Registered", "Superseded") and "v2 (bot-v2)" in dec.status["message"]
    assert "rollback" not in dec.status


def _manual_rollback(dec):
    assert not of(dec, Weights), "a manual rollback flips at once, with no canary"
    after = written(dec)
    assert after.production == "bot-v1" and after.history[-1]["event"] == "manualRollback"
    assert after.decisions["bot-v2"]["rollback"] == {"trigger": "manual", "restoredVersion": "v1", "at": AT}
    assert counted(dec, "ROLLBACKS", "manual")


def _manually_rolled_back_from(dec):
    assert phase(dec) == ("Registered", "Superseded") and "manual rollback" in dec.status["message"]
    assert dec.status["rollback"] == {"restoredVersion": "v1", "trigger": "manual"}
    assert dec.status["rolledBackAt"] == AT


def _archived(dec):
    assert phase(dec) == ("Archived", "Archived") and pods_in(of(dec, Unload)[0]) == ["pod-a"]


def _candidate(dec):
    assert phase(dec) == ("Registered", "Candidate") and condition(dec, "Ready")["status"] == "True"
    assert "production: v1 (bot-v1)" in dec.status["message"] and not dec.actions


CASES = [
    # register
    ("a verified adapter is registered as a candidate",
     snap(mv("v1", stage="candidate", status={}), registration=verified()), _registered_candidate),
    ("a fromJob version waits for its FineTuneJob",
     snap(mv("v1", status={}), registration=Registration("wait", "WaitingForJob", "job is Running")), _waits_for_job),
    ("a digest mismatch fails registration and loads nothing",
     snap(mv("v1", status={}), registration=Registration("failed", "DigestMismatch", "bad")), _digest_mismatch),
    ("a failed registration is not looked at again at the same generation",
     snap(mv("v1", status=FAILED), registration=Registration("unchanged")),
     lambda dec: (phase(dec) == ("Failed", "DigestMismatch") and not dec.actions) or pytest.fail(dec)),
    ("S3 down while registering retries",
     snap(mv("v1", status={}), registration=Registration("unavailable", "S3Unavailable", "down")), _s3_down),
    # gates
    ("a gate failure keeps the version a candidate",
     snap(mv("v1", gates={"metrics": [{"metric": "eval_loss", "max": 0.5}]}), TWO), _gates_failed),
    ("a gate failure is counted once per generation",
     snap(mv("v1", gates={"metrics": [{"metric": "eval_loss", "max": 0.5}]}, status=registered_status(
         "v1", conditions=registered_status("v1")["conditions"] + [{
             "type": "GatesPassed", "status": "False", "reason": "GatesFailed", "message": "x",
             "observedGeneration": 1, "lastTransitionTime": AT}])), TWO), _gate_failure_counted_once),
    ("mustBeatProduction compares with the version the record names",
     snap(mv("v2", gates={"mustBeatProduction": {"metric": "eval_loss"}}), ON_V1, rec("v1", decisions=won("v1")),
          others=[mv("v1", status=registered_status("v1", lineage={"metrics": {"eval_loss": 0.9}}))]),
     _must_beat_production),
    # compatibility and the request
    ("a request with no ready serving pods waits", snap(mv("v1"), []), _no_pods),
    ("an unreachable pod refuses the request before any load",
     snap(mv("v1"), [pod("pod-a"), pod("pod-b", error="AgentUnreachable: down")]), _unreachable),
    ("an incompatible adapter is refused before any load", snap(mv("v1"), [pod("pod-a", rank=2)]), _incompatible),
    ("the first promotion preloads everywhere, flips, then records production",
     snap(mv("v1"), TWO, others=[]), _two_phase_promotion),
    ("a promotion replaces the production version",
     snap(mv("v2"), ON_V1, rec("v1", decisions=won("v1")), others=[]), _replaces_production),
    ("another version holding the lock makes the request lose",
     snap(mv("v2"), ON_V1, rec("v1", promoting=lock("v3", "v1"), decisions=won("v1")),
          others=[mv("v3")]), _lost_to_holder),
    ("a lock whose holder was deleted is released",
     snap(mv("v2"), ON_V1, rec("v1", promoting=lock("v3", "v1"), decisions=won("v1")), others=[]), _holder_deleted),
    ("two versions asking at once: the older object wins",
     snap(mv("v2"), TWO, others=[CONTENDER]), _older_contender_wins),
    # preload, flip, cancel
    ("a preload that failed on one pod unloads where it loaded and records the failure",
     snap(mv("v2"), [pod("pod-a", served("v1"), served("v2"), alias=on("v1")), ON_V1[1]], HOLDING,
          outcome=Outcome((("pod-b", "AccessDenied: no"),), True)), _preload_failed),
    ("a flip that missed a pod keeps promoting and does not record production",
     snap(mv("v2"), [pod("pod-a", served("v1"), served("v2"), alias=on("v2")),
                     pod("pod-b", served("v1"), served("v2"), alias=on("v1"))],
          rec(promoting=lock("v2")), outcome=Outcome((("pod-b", "AgentUnreachable: timeout"),), True)),
     _flip_missed),
    ("a spec change during the promotion cancels it and flips back",
     snap(mv("v2", stage="candidate"), [pod("pod-a", served("v1"), served("v2"), alias=on("v2"))], HOLDING),
     _cancelled),
    # canary
    ("the first canary step splits the alias and records the step",
     snap(mv("v2", rollout=CANARY), LOADED_BOTH, canary_rec()), _first_step),
    ("a canary step holds while its pause runs",
     snap(mv("v2", rollout=CANARY), SPLIT, canary_rec(0, NOW - 10), analysis=Analysis("q", 0.1)), _step_holds),
    ("a canary step's pause over, the next step",
     snap(mv("v2", rollout=CANARY), SPLIT, canary_rec(0, NOW - 61), analysis=Analysis("q", 0.1)), _next_step),
    ("every canary step passed: full flip and production",
     snap(mv("v2", rollout=CANARY), SPLIT, canary_rec(1, NOW - 31)), _canary_passed),
    ("a canary breach aborts back to the old version",
     snap(mv("v2", rollout=CANARY), SPLIT, canary_rec(0, NOW - 10), analysis=Analysis(ERRORS, 0.9)),
     _canary_aborted),
    ("no data from the canary analysis is not a breach",
     snap(mv("v2", rollout=CANARY), SPLIT, canary_rec(0, NOW - 10), analysis=Analysis("q", None)),
     _no_data_is_not_a_breach),
    # production
    ("the production version converges a new pod",
     snap(mv("v1"), ON_V1 + [pod("pod-c")], rec("v1", decisions=won("v1"))), _converges_a_new_pod),
    ("version skew is reported and corrected",
     snap(mv("v1"), [ON_V1[0], pod("pod-b", served("v1"), alias=on("v0"))], rec("v1", decisions=won("v1"))),
     _skew_corrected),
    ("while another version is promoted the production version only preloads",
     snap(mv("v1"), ON_V1 + [pod("pod-c")], rec("v1", promoting=lock("v2", "v1"), decisions=won("v1"))),
     _promotion_in_progress),
    ("inside the bake window without a breach the version stays production",
     snap(mv("v2", rollback=BAKE), [pod("pod-a", served("v2"), alias=on("v2"))],
          rec("v2", "v1", promoted_at=RECENT, decisions=won("v2")), analysis=Analysis(ERRORS, 0.1), others=[]),
     _bake_holds),
    ("a bake-window breach rolls back to the previous version",
     snap(mv("v2", rollback=BAKE), [pod("pod-a", served("v1"), served("v2"), alias=on("v2"))],
          rec("v2", "v1", promoted_at=RECENT, decisions=won("v2")), analysis=Analysis(ERRORS, 0.9),
          others=[mv("v1")]), _rolled_back),
    ("a breach of the first version rolls back to the base model",
     snap(mv("v2", rollback=BAKE), [pod("pod-a", served("v2"), alias=on("v2"))],
          rec("v2", promoted_at=RECENT, decisions=won("v2")), analysis=Analysis(ERRORS, 0.9), others=[]),
     _rolled_back_to_base),
    ("a breach with no previous version and no base model reported stays production",
     snap(mv("v2", rollback=BAKE), [pod("pod-a", served("v2"), alias=on("v2"), base_name="")],
          rec("v2", promoted_at=RECENT, decisions=won("v2")), analysis=Analysis(ERRORS, 0.9), others=[]),
     _rollback_impossible),
    ("a failing bake-window query is reported, not a breach",
     snap(mv("v2", rollback=BAKE), [pod("pod-a", served("v2"), alias=on("v2"))],
          rec("v2", promoted_at=RECENT, decisions=won("v2")), analysis=Analysis(ERRORS, error="HTTP 500"),
          others=[]), _analysis_failed),
    ("the restored version says it serves again",
     snap(mv("v1"), ON_V1, rec("v1", decisions=won("v1"), history=[{"at": AT, "event": "rolledBack",
                                                                    "version": "v2"}])), _serving_again),
    ("a version rolled back to the base keeps every pod on the base",
     snap(mv("v1", rollback=BAKE), [pod("pod-a", alias=on(BASE_NAME)), pod("pod-b", served("v1"), alias=on("v1"))],
          rec(on_base=BASE_NAME, decisions={"bot-v1": {"generation": 1, "result": "rolledBack", "at": AT,
                                                       "rollback": {"query": "q", "value": 1, "threshold": 0.5,
                                                                    "restoredVersion": "base",
                                                                    "trigger": "analysis"}}}), others=[]),
     _rolled_back_keeps_base),
    ("a record naming a version whose stage is candidate serves nothing",
     snap(mv("v1", stage="candidate"), [pod("pod-a"), pod("pod-b", served("v1"))], rec("v1", decisions=won("v1"))),
     _not_served),
    ("a record naming an archived version serves nothing and unloads nothing",
     snap(mv("v1", stage="archived"), [pod("pod-a"), pod("pod-b", served("v1"), alias=on("v1"))],
          rec("v1", decisions=won("v1"))), _not_served),
    ("a record naming a never-approved candidate serves nothing",
     snap(mv("v2", stage="candidate"), [pod("pod-a", served("v1"), alias=on("v1"))],
          rec("v2", "v1", decisions=won("v1")), others=[mv("v1")]), _not_served),
    ("a breach rolls back to the base model when the previous version was demoted since",
     snap(mv("v2", rollback=BAKE), [pod("pod-a", served("v1"), served("v2"), alias=on("v2"))],
          rec("v2", "v1", promoted_at=RECENT, decisions=won("v2")), analysis=Analysis(ERRORS, 0.9),
          others=[mv("v1", stage="candidate")]), _rolled_back_to_base_past_a_demoted_previous),
    ("a spec edit of the production version keeps it production",
     snap(mv("v1", generation=2), ON_V1, rec("v1", decisions=won("v1"))), _spec_edit_keeps_production),
    # decided
    ("the previous production version shows it was superseded",
     snap(mv("v1"), ON_V1, rec("v2", "v1", decisions=won("v1", "v2")), others=[]), _superseded),
    ("the previous version asking again is a manual rollback",
     snap(mv("v1", rollout=CANARY), [pod("pod-a", served("v1"), served("v2"), alias=on("v2"))],
          rec("v2", "v1", decisions=won("v2")), others=[]), _manual_rollback),
    ("the version rolled back from by hand shows trigger manual",
     snap(mv("v2"), ON_V1, rec("v1", decisions={**won("v1"), **won("v2", rollback={
         "trigger": "manual", "restoredVersion": "v1", "at": AT})}), others=[]), _manually_rolled_back_from),
    ("an archived version is unloaded where no alias routes to it",
     snap(mv("v2", stage="archived"), [pod("pod-a", served("v1"), served("v2"), alias=on("v1"))],
          rec("v1", decisions=won("v1")), others=[]), _archived),
    ("a candidate says which version is production",
     snap(mv("v2", stage="candidate"), [], rec("v1", decisions=won("v1")), others=[]), _candidate),
]


# --- more edges -------------------------------------------------------------------------------------------------
def _contenders_filtered(dec):
    assert of(dec, WriteRecord)[0].record.holder() == "bot-v2", "only undecided, able versions contend"
    assert phase(dec) == ("Production", "Promoted")


def _holder_with_no_pods(dec):
    assert phase(dec) == ("Registered", "PreloadFailed") and "(none)" in dec.status["message"]


def _cancel_pending(dec):
    assert phase(dec) == ("Promoting", "Cancelling") and dec.requeue == 1.0 and not of(dec, WriteRecord)


def _canary_query_failed(dec):
    assert emitted(dec, "AnalysisFailed") and phase(dec) == ("Promoting", "Canary") and not of(dec, Flip)


def _canary_weights_missed(dec):
    assert phase(dec) == ("Promoting", "CanaryWeighting") and dec.requeue == 1.0
    assert "pod-b: AgentUnreachable: x" in dec.status["message"]


def _converging(dec):
    assert condition(dec, "Ready")["reason"] == "Converging" and "1/2 pods" in condition(dec, "Ready")["message"]
    assert phase(dec)[0] == "Production"


def _rolled_back_keeps_seconds(dec):
    assert dec.status["rollback"]["seconds"] == 0.02 and "flipped back in 0.02 s" in dec.status["message"]
    assert "rolledBackAt" not in dec.status


def _cancelled_request(dec):
    assert phase(dec) == ("Registered", "PromotionCancelled")


def _archived_without_target(dec):
    assert phase(dec) == ("Archived", "Archived") and not dec.actions and "servedBy" not in dec.status


ASKING = {"phase": "Registered", "conditions": []}
ROLLED_BACK = {"generation": 1, "result": "rolledBack", "at": AT, "rollback": {
    "query": "q", "value": 0.9, "threshold": 0.5, "restoredVersion": "v1", "trigger": "analysis"}}
MORE = [
    ("versions that are candidates, decided or failed do not contend for the lock",
     snap(mv("v2"), TWO, others=[mv("v0", stage="candidate", created="2026-01-01T00:00:00Z"),
                                 mv("v8", created="2026-01-01T00:00:00Z"),
                                 mv("v9", created="2026-01-01T00:00:00Z", status={**ASKING, "phase": "Failed"})],
          record_=rec(decisions={"bot-v8": {"generation": 1, "result": "lost", "at": AT}})), _contenders_filtered),
    ("a promotion with no ready pod left fails",
     snap(mv("v2"), [], rec(promoting=lock("v2"))), _holder_with_no_pods),
    ("a cancel whose flip back missed a pod retries",
     snap(mv("v2", stage="candidate"), [pod("pod-a", served("v1"), served("v2"), alias=on("v2"))], HOLDING,
          outcome=Outcome((("pod-a", "AgentUnreachable: x"),), True)), _cancel_pending),
    ("a failing canary query is reported and holds the step",
     snap(mv("v2", rollout=CANARY), SPLIT, canary_rec(0, NOW - 10), analysis=Analysis("q", error="HTTP 500")),
     _canary_query_failed),
    ("canary weights that missed a pod are retried",
     snap(mv("v2", rollout=CANARY), [SPLIT[0], LOADED_BOTH[1]], canary_rec(0, NOW - 61),
          outcome=Outcome((("pod-b", "AgentUnreachable: x"),), True)), _canary_weights_missed),
    ("a production pod that cannot be reached leaves the version converging",
     snap(mv("v1"), [ON_V1[0], pod("pod-b", error="AgentUnreachable: down")], rec("v1", decisions=won("v1"))),
     _converging),
    ("a rolled-back version keeps the measured seconds on later passes",
     snap(mv("v2", status=registered_status("v2", rolledBackAt=AT, rollback={"trigger": "analysis", "seconds": 0.02})),
          ON_V1, rec("v1", decisions={**won("v1"), "bot-v2": ROLLED_BACK}), others=[]), _rolled_back_keeps_seconds),
    ("a cancelled request says so until the spec changes",
     snap(mv("v2"), ON_V1, rec("v1", decisions={**won("v1"), "bot-v2": {
         "generation": 1, "result": "cancelled", "at": AT}}), others=[]), _cancelled_request),
    ("an archived version without a serving target only says so",
     snap(mv("v2", stage="archived", servingTarget=None), (), rec(), others=[]), _archived_without_target),
]
CASES += MORE


@pytest.mark.parametrize("behaviour, snapshot, check", CASES, ids=[c[0] for c in CASES])
def test_decide(behaviour, snapshot, check):
    check(d.decide(snapshot, NOW))


def test_decide_is_pure(monkeypatch):
    """No cluster, network or clock: socket and time.time raise, and the snapshot is left as it was."""
    def refuse(*_, **__):
        raise AssertionError("decide touched the network or the clock")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(time, "time", refuse)
    monkeypatch.setattr(time, "monotonic", refuse)
    for behaviour, snapshot, _ in CASES:
        before = copy.deepcopy(snapshot)
        d.decide(snapshot, NOW)
        assert snapshot == before, f"{behaviour}: decide changed its snapshot"


def test_an_unchanged_status_writes_nothing():
    dec = d.decide(snap(mv("v1"), ON_V1, rec("v1", decisions=won("v1"))), NOW)
    settled = {**dec.status}
    assert d.changes(settled, dec.status) == {}
    assert d.changes({**settled, "canary": {"step": 0}}, {**dec.status, "canary": None}) == {"canary": None}
    assert d.changes({}, {"canary": None}) == {}


def test_a_measured_rollback_fills_status_rollback_seconds():
    dec = d.Decision(status={"rollback": {"trigger": "analysis"}})
    assert d.measured(dec, 0.01234).status["rollback"] == {"trigger": "analysis", "seconds": 0.012}
    assert d.measured(d.Decision(status={}), 1.0).status == {}


@pytest.mark.parametrize("behaviour, mv_, record_, now, wanted", [
    ("a canary step of the lock holder runs the canary analysis",
     mv("v2", rollout=CANARY), canary_rec(0, NOW), NOW, "canary"),
    ("before the first canary step there is nothing to analyse", mv("v2", rollout=CANARY), canary_rec(), NOW, None),
    ("the production version in its bake window runs the rollback query",
     mv("v2", rollback=BAKE), rec("v2", promoted_at=RECENT), NOW, "rollback"),
    ("after the bake window no query runs", mv("v2", rollback=BAKE), rec("v2", promoted_at=RECENT), NOW + 600, None),
    ("a candidate runs no query", mv("v3", rollback=BAKE), rec("v2", promoted_at=RECENT), NOW, None),
    ("a version the record names but whose stage is not production runs no query",
     mv("v2", stage="candidate", rollback=BAKE), rec("v2", promoted_at=RECENT), NOW, None),
])
def test_analysis_wanted(behaviour, mv_, record_, now, wanted):
    got = d.analysis_wanted(mv_, record_, now)
    assert (got[0] if got else None) == wanted
