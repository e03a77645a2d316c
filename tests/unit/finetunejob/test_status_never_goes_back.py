"""The Queued flash between Running 30/30 and Succeeded, and why it cannot come back.

Between the trainer pod ending and its Job getting Complete, the Job controller first moves the
pod to status.uncountedTerminatedPods (active drops to 0, succeeded is still 0), then counts it,
then writes SuccessCriteriaMet and Complete. A pass that reads the Job in that window, or reads a
Job older than its pods, used to see an attempt "waiting for its pods" and flip the phase to
Queued (event "Training: ... is waiting for its pods").
"""
from __future__ import annotations

import pytest

from finetune_operator import status as st
from finetune_operator.finetunejob import decide as D, phase as ph

from ftj_fixtures import NOW, VALIDATED, cond, ftj, iso, job, pod, snapshot

WINDOW = [
    ("uncounted terminated pod, active already 0", {"status": {"active": 0, "uncountedTerminatedPods": {
        "succeeded": ["uid-1"]}}}, [pod("Succeeded")]),
    ("uncounted, pods listed before the pod ended", {"status": {"active": 0, "uncountedTerminatedPods": {
        "succeeded": ["uid-1"]}}}, [pod("Running")]),
    ("a Job read older than its pods", {"status": {"active": 1}}, [pod("Succeeded")]),
    ("a failed pod not yet counted", {"status": {"active": 0, "uncountedTerminatedPods": {"failed": ["u"]}}},
     [pod("Failed", exit_code=1)]),
]


@pytest.mark.parametrize("what,the_job,pods", WINDOW, ids=[w[0] for w in WINDOW])
def test_a_job_whose_pod_has_ended_but_is_not_yet_counted_is_finishing(what, the_job, pods):
    assert st.job_state(the_job, pods) == "finishing"


def test_job_state_alone_reads_uncounted_terminated_pods_as_finishing():
    # Fails on the code before this change: job_state returned "pending" here.
    assert st.job_state({"status": {"active": 0, "uncountedTerminatedPods": {"succeeded": ["uid-1"]}}}) == "finishing"


@pytest.mark.parametrize("what,the_job,pods", WINDOW, ids=[w[0] for w in WINDOW])
def test_the_window_keeps_a_running_job_running(what, the_job, pods):
    status = {"phase": "Running", "reason": "Training", "message": "attempt 1 of 4 is running", "attempts": 1,
              "trainerJob": "bot-train-1", "startTime": iso(NOW - 60), "observedGeneration": 1,
              "conditions": [VALIDATED, cond("Running", "True", "Training", "attempt 1 of 4 is running")]}
    the_job = {**job(), **the_job}
    d = D.decide(snapshot(ftj(status=status), job=the_job, pods=tuple(pods)), NOW)
    assert d.status["phase"] == "Running" and not d.events


@pytest.mark.parametrize("before,after,backwards", [
    ({"phase": "Running", "attempts": 1}, {"phase": "Queued", "attempts": 1}, True),
    ({"phase": "Running", "attempts": 1}, {"phase": "Queued", "attempts": 2}, False),     # a retry
    ({"phase": "Queued", "attempts": 1}, {"phase": "Validating", "attempts": 1}, True),
    ({"phase": "Running"}, {"phase": "Suspended"}, False),
    ({"phase": "Suspended"}, {"phase": "Queued"}, False),                                 # resume
    ({"phase": "Succeeded"}, {"phase": "Running"}, True),
    ({"phase": "Pending"}, {"phase": "Failed"}, False),
])
def test_the_documented_order_allows_going_back_only_for_a_retry_or_a_resume(before, after, backwards):
    assert ph.moved_backwards(before, after) is backwards


@pytest.mark.parametrize("conditions,phase", [
    ([], "Pending"),
    ([cond("Validated", "False", "Validating")], "Validating"),
    ([cond("Validated", "False", "DatasetInvalid"), cond("Succeeded", "False", "DatasetInvalid")], "Failed"),
    ([VALIDATED], "Queued"),
    ([VALIDATED, cond("Running", "False", "WaitingForCapacity")], "Queued"),
    ([VALIDATED, cond("Running", "True", "Training")], "Running"),
    ([VALIDATED, cond("Running", "False", "Suspended"), cond("Suspended", "True", "Suspended")], "Suspended"),
    ([VALIDATED, cond("Succeeded", "True", "Trained")], "Succeeded"),
    ([VALIDATED, cond("Succeeded", "False", "Cancelled")], "Cancelled"),
    ([VALIDATED, cond("Running", "True", "Training"), cond("ReconcileError", "True", "UnexpectedError")], "Running"),
])
def test_the_phase_is_derived_from_the_conditions(conditions, phase):
    assert ph.derive(conditions)[0] == phase
