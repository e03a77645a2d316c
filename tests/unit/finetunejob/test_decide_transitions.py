"""decide, table by table: one row per transition of docs/operator.md's FineTuneJob phases."""
from __future__ import annotations

import pytest

from finetune_operator.finetunejob import decide as D
from finetune_operator.finetunejob.draft import (CREATE, DELETE_CHILDREN, PATCH_FINALIZERS, SET_JOB_SUSPEND,
                                                 STOP_TRAINER, WAKE_NAMESPACE)

from ftj_fixtures import (CAPPED, NOW, VALIDATED, Capacity, Preflight, Verified, cond, ftj, iso, job, pod, snapshot,
                       termination)

RUNNING = cond("Running", "True", "Training", "attempt 1 of 4 is running")
VALIDATING = cond("Validated", "False", "Validating")
OK_RESULT = termination("Succeeded", manifestUri="s3://out/bot/manifest.json", adapterUri="s3://out/bot/adapter")


def kinds(decision):
    return [(a.kind, (a.body or {}).get("kind", a.name)) for a in decision.actions]


def run(obj, **children):
    return D.decide(snapshot(obj, **children), NOW)


def running_status(**extra):
    return {"phase": "Running", "reason": "Training", "attempts": 1, "trainerJob": "bot-train-1",
            "startTime": iso(NOW - 60), "conditions": [VALIDATED, RUNNING], **extra}


# --- validation ---------------------------------------------------------------------------------
def test_a_new_job_passes_preflight_and_creates_its_config_map_and_validate_pod():
    d = run(ftj(), preflight=Preflight(nodes=({"metadata": {"name": "n", "labels": {}},
                                                "status": {"allocatable": {"nvidia.com/gpu": "1"}}},)),
            config_map_exists=False)
    assert d.status["phase"] == "Validating" and d.status["validationPod"] == "bot-validate"
    assert kinds(d) == [(CREATE, "ConfigMap"), (CREATE, "Pod")]
    assert ("Normal", "Validating") == d.events[-1][:2]


@pytest.mark.parametrize("preflight,reason", [
    (Preflight(credentials_problem=("CredentialsMissing", "Secret s3 has no key AWS_ACCESS_KEY_ID")),
     "CredentialsMissing"),
    (Preflight(nodes=()), "NoFittingNode"),
])
def test_a_failed_preflight_ends_the_job_before_any_pod_exists(preflight, reason):
    d = run(ftj(), preflight=preflight)
    assert (d.status["phase"], d.status["reason"]) == ("Failed", reason) and not d.actions
    assert d.events[-1][0] == "Warning" and d.status["completionTime"] == iso(NOW)


def test_preflight_is_skipped_where_nodes_cannot_be_listed():
    assert run(ftj(), preflight=Preflight(nodes=None), config_map_exists=True).status["phase"] == "Validating"


def test_an_existing_config_map_is_not_created_again():
    d = run(ftj(), preflight=Preflight(), config_map_exists=True)
    assert kinds(d) == [(CREATE, "Pod")]


def test_a_running_validate_pod_keeps_the_job_validating_without_actions():
    obj = ftj(status={"phase": "Validating", "conditions": [VALIDATING]})
    d = run(obj, validate_pod=pod("Running"))
    assert d.status["phase"] == "Validating" and not d.actions and d.requeue is None


def test_a_valid_dataset_is_recorded_and_the_first_attempt_launches_in_the_same_pass():
    msg = termination("Succeeded", datasetStats={"rows": 40, "tokens": 900})
    obj = ftj(status={"phase": "Validating", "conditions": [VALIDATING]})
    d = run(obj, validate_pod=pod("Succeeded", msg), config_map_exists=True)
    assert d.status["datasetStats"]["rows"] == 40 and d.status["phase"] == "Queued"
    assert kinds(d) == [(CREATE, "Job")] and d.status["trainerJob"] == "bot-train-1"
    assert {"DatasetValid", "TrainerLaunched"} <= {e[1] for e in d.events}


def test_an_invalid_dataset_fails_with_the_trainers_reason():
    obj = ftj(status={"phase": "Validating", "conditions": [VALIDATING]})
    d = run(obj, validate_pod=pod("Failed", termination("DatasetInvalid", message="line 2: not valid JSON"), 11))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "DatasetInvalid")
    assert "line 2" in d.status["message"]


# --- capacity, launch, Kueue ---------------------------------------------------------------------
def test_a_validated_job_waits_for_capacity_when_the_namespace_cap_is_full():
    obj = ftj(status={"phase": "Queued", "conditions": [VALIDATED]})
    d = run(obj, settings=CAPPED, capacity=Capacity(1, 1, ()), job=None)
    assert (d.status["phase"], d.status["reason"]) == ("Queued", "WaitingForCapacity") and d.requeue == 5.0
    assert not d.actions and "1/1 jobs running" in d.status["message"]


def test_capacity_admits_the_job_and_the_job_is_launched():
    obj = ftj(status={"phase": "Queued", "conditions": [VALIDATED]})
    d = run(obj, settings=CAPPED, capacity=Capacity(0, 0, ()), job=None)
    assert kinds(d) == [(CREATE, "Job")]


def test_a_multi_node_job_gets_its_headless_service_before_the_job():
    obj = ftj(status={"conditions": [VALIDATED]}, resources={"nodes": 2, "gpusPerNode": 1})
    assert kinds(run(obj)) == [(CREATE, "Service"), (CREATE, "Job")]


def test_a_kueue_job_suspended_by_kueue_waits_for_kueue():
    obj = ftj(status={"attempts": 1, "conditions": [VALIDATED]}, resources={"queueName": "gpu"})
    d = run(obj, job=job(suspend=True))
    assert (d.status["phase"], d.status["reason"]) == ("Queued", "WaitingForKueue") and not d.actions


def test_pods_not_yet_running_keep_the_attempt_queued():
    obj = ftj(status={"attempts": 1, "conditions": [VALIDATED]})
    d = run(obj, job=job(active=1), pods=(pod("Pending"),))
    assert (d.status["phase"], d.status["reason"]) == ("Queued", "Training")
    assert "waiting for its pods" in d.status["message"]


# --- running, progress, finishing ----------------------------------------------------------------
def test_a_running_pod_makes_the_job_running_with_its_start_time_and_progress():
    obj = ftj(status={"attempts": 1, "conditions": [VALIDATED]})
    d = run(obj, job=job(active=1), pods=(pod("Running"),),
            progress={"step": 3, "totalSteps": 30, "trainLoss": 1.5, "checkpoints": [{"step": 2, "uri": "s3://c"}]})
    assert d.status["phase"] == "Running" and d.status["startTime"] == iso(NOW)
    assert d.status["progress"]["display"] == "3/30" and d.status["progress"]["history"] == [{"step": 3,
                                                                                               "trainLoss": 1.5}]
    assert d.status["checkpoints"] == [{"step": 2, "uri": "s3://c"}] and d.requeue == 3.0


@pytest.mark.parametrize("job_status,pods", [
    ({"active": 0, "uncountedTerminatedPods": {"succeeded": ["uid"]}}, (pod("Succeeded"),)),
    ({"active": 1}, (pod("Succeeded"),)),                       # the Job read before its pods
    ({"active": 0, "conditions": [("SuccessCriteriaMet", "")]}, (pod("Succeeded"),)),
    ({"active": 0, "succeeded": 1}, ()),                         # pods already gone
    ({"active": 1}, (pod("Pending"),)),                          # a pod read older than the last pass's
])
def test_a_running_attempt_never_flashes_back_to_queued_while_it_finishes(job_status, pods):
    d = run(ftj(status=running_status()), job=job(**job_status), pods=pods)
    assert (d.status["phase"], d.status["reason"]) == ("Running", "Training")
    assert not any(e[1] == "Training" for e in d.events)


# --- success ---------------------------------------------------------------------------------------
def test_a_complete_job_with_a_verified_adapter_succeeds_and_registers_its_model_version():
    obj = ftj(status=running_status(progress={"step": 29, "totalSteps": 30}),
              output={"uri": "s3://out/bot/", "registerModelVersion": {"model": "bot"}})
    d = run(obj, job=job(conditions=[("Complete", "")], succeeded=1), pods=(pod("Succeeded", OK_RESULT),),
            verified=Verified(adapter_uri="s3://out/bot/adapter", digest="sha256:ab", manifest={"steps": 30}, files=2))
    assert (d.status["phase"], d.status["reason"]) == ("Succeeded", "Trained")
    assert d.status["result"]["adapterDigest"] == "sha256:ab" and d.status["progress"]["display"] == "30/30"
    assert "2 files verified" in d.status["message"] and d.status["modelVersion"] == "bot-bot"
    assert kinds(d) == [(CREATE, "ModelVersion")] and d.status["completionTime"] == iso(NOW)


def test_a_tampered_adapter_fails_the_job():
    d = run(ftj(status=running_status()), job=job(conditions=[("Complete", "")]), pods=(pod("Succeeded", OK_RESULT),),
            verified=Verified(error=("DigestMismatch", "adapter_model.safetensors: sha256 x")))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "DigestMismatch")


def test_s3_unavailable_during_verification_is_retried_not_failed():
    d = run(ftj(status=running_status()), job=job(conditions=[("Complete", "")]), pods=(pod("Succeeded", OK_RESULT),),
            verified=Verified(error=("S3Unavailable", "timeout")))
    assert d.status["phase"] == "Running" and d.requeue == 10.0


def test_a_trainer_that_exits_0_without_a_result_fails_with_result_missing():
    d = run(ftj(status=running_status()), job=job(conditions=[("Complete", "")]),
            pods=(pod("Succeeded", "done"),))
    assert d.status["reason"] == "ResultMissing"


# --- failures --------------------------------------------------------------------------------------
def failed_job(message, exit_code=1, reason=None, job_reason="BackoffLimitExceeded"):
    return {"job": job(conditions=[("Failed", job_reason)], failed=1),
            "pods": (pod("Failed", message, exit_code, reason),)}


@pytest.mark.parametrize("message,exit_code,reason", [
    (termination("Preempted", True), 1, "Preempted"),
    (termination("S3Unavailable", True), 1, "S3Unavailable"),
    ("", 137, "PodFailed"),                                     # killed without a message
])
def test_a_retryable_failure_queues_the_next_attempt_after_backoff(message, exit_code, reason):
    d = run(ftj(status=running_status()), **failed_job(message, exit_code))
    assert (d.status["phase"], d.status["reason"], d.status["attempts"]) == ("Queued", "Retrying", 2)
    assert d.status["nextAttemptAfter"] == int(NOW + 5) and d.requeue == 5.0
    assert d.status["lastFailure"]["reason"] == reason and d.events[-1][0] == "Warning"


def test_the_next_attempt_waits_for_its_backoff_then_launches_resuming():
    status = {**running_status(), "attempts": 2, "phase": "Queued", "nextAttemptAfter": int(NOW + 3),
              "conditions": [VALIDATED, cond("Running", "False", "Retrying")]}
    assert run(ftj(status=status)).requeue == pytest.approx(3.0)
    later = {**status, "nextAttemptAfter": int(NOW - 1)}
    d = run(ftj(status=later), config_map_exists=True)
    assert kinds(d) == [(CREATE, "Job")] and d.actions[0].body["metadata"]["name"] == "bot-train-2"
    assert "TrainerRelaunched" in {e[1] for e in d.events}


def test_a_permanent_failure_ends_the_job():
    d = run(ftj(status=running_status()), **failed_job(termination("Diverged", message="loss became NaN"), 14))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "Diverged") and "NaN" in d.status["message"]


def test_retries_beyond_the_retry_limit_end_in_retry_limit_exceeded():
    obj = ftj(status={**running_status(), "attempts": 2, "trainerJob": "bot-train-2"},
              lifecycle={"retryLimit": 1})
    d = run(obj, job=job("bot-train-2", conditions=[("Failed", "BackoffLimitExceeded")]),
            pods=(pod("Failed", "", 143),))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "RetryLimitExceeded")


def test_the_jobs_own_deadline_is_a_permanent_deadline_exceeded():
    obj = ftj(status=running_status(), lifecycle={"activeDeadlineSeconds": 600})
    d = run(obj, **failed_job("", 143, job_reason="DeadlineExceeded"))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "DeadlineExceeded")


OOM = termination("OutOfMemory", True, message="out of GPU memory at step 3")


def test_out_of_memory_fails_by_default():
    d = run(ftj(status=running_status()), **failed_job(OOM, 13))
    assert d.status["reason"] == "OutOfMemory" and "onOutOfMemory.action is Fail" in d.status["message"]


def test_out_of_memory_under_split_micro_batch_relaunches_with_the_split_doubled():
    obj = ftj(status=running_status(), lifecycle={"onOutOfMemory": {"action": "SplitMicroBatch"}})
    d = run(obj, **failed_job(OOM, 13))
    assert (d.status["phase"], d.status["microBatchSplit"]) == ("Queued", 2)
    assert "MicroBatchSplit" in {e[1] for e in d.events}


def test_an_oom_killed_container_counts_as_out_of_memory():
    d = run(ftj(status=running_status()), **failed_job("", 137, reason="OOMKilled"))
    assert d.status["reason"] == "OutOfMemory"


def test_out_of_memory_at_the_largest_split_fails():
    obj = ftj(status=running_status(microBatchSplit=4), training={"batchSize": 4},
              lifecycle={"onOutOfMemory": {"action": "SplitMicroBatch", "maxSplit": 4}})
    d = run(obj, **failed_job(OOM, 13))
    assert d.status["phase"] == "Failed" and "already split in 4" in d.status["message"]


# --- suspend / resume, cancel, deadline, TTL -------------------------------------------------------
def test_suspend_suspends_the_job_and_the_phase():
    d = run(ftj(status=running_status(), lifecycle={"suspend": True}), job=job(active=1), pods=(pod(),))
    assert d.status["phase"] == "Suspended" and kinds(d) == [(SET_JOB_SUSPEND, "bot-train-1")]
    assert d.actions[0].value is True


def test_suspend_before_the_first_launch_creates_nothing():
    d = run(ftj(status={"conditions": [VALIDATED]}, lifecycle={"suspend": True}))
    assert d.status["phase"] == "Suspended" and not d.actions


def test_resume_unsuspends_the_job_and_queues_the_same_attempt():
    status = {**running_status(), "phase": "Suspended", "reason": "Suspended",
              "conditions": [VALIDATED, cond("Running", "False", "Suspended"), cond("Suspended", "True", "Suspended")]}
    d = run(ftj(status=status), job=job(suspend=True))
    assert (d.status["phase"], d.status["reason"], d.status["attempts"]) == ("Queued", "Resumed", 1)
    assert kinds(d) == [(SET_JOB_SUSPEND, "bot-train-1")] and d.actions[0].value is False


def test_resume_waits_for_capacity_under_the_caps():
    status = {**running_status(), "phase": "Suspended",
              "conditions": [VALIDATED, cond("Suspended", "True", "Suspended")]}
    d = run(ftj(status=status), settings=CAPPED, job=job(suspend=True), capacity=Capacity(1, 1, ()))
    assert not d.actions and d.requeue == 5.0


def test_cancel_stops_the_trainer_and_ends_cancelled():
    d = run(ftj(status=running_status(), lifecycle={"cancel": True}))
    assert (d.status["phase"], d.status["reason"]) == ("Cancelled", "Cancelled") and kinds(d) == [(STOP_TRAINER, "")]


def test_cancel_wakes_jobs_waiting_behind_the_caps():
    d = run(ftj(status=running_status(), lifecycle={"cancel": True}), settings=CAPPED)
    assert WAKE_NAMESPACE in [a.kind for a in d.actions]


def test_the_deadline_counted_from_the_first_start_fails_the_job():
    obj = ftj(status=running_status(startTime=iso(NOW - 700)), lifecycle={"activeDeadlineSeconds": 600})
    d = run(obj)
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "DeadlineExceeded") and kinds(d) == [(STOP_TRAINER, "")]


def test_the_next_attempt_gets_only_the_deadline_left():
    status = {**running_status(startTime=iso(NOW - 100)), "attempts": 2, "phase": "Queued",
              "conditions": [VALIDATED, cond("Running", "False", "Retrying")]}
    d = run(ftj(status=status, lifecycle={"activeDeadlineSeconds": 600}), config_map_exists=True)
    assert d.actions[0].body["spec"]["activeDeadlineSeconds"] == 500 and d.requeue == 500


def test_a_finished_job_waits_for_its_ttl_then_deletes_its_children():
    done = {"phase": "Succeeded", "reason": "Trained", "completionTime": iso(NOW - 30),
            "conditions": [VALIDATED, cond("Succeeded", "True", "Trained")]}
    assert run(ftj(status=done, lifecycle={"ttlSecondsAfterFinished": 60})).requeue == 30
    d = run(ftj(status=done, lifecycle={"ttlSecondsAfterFinished": 10}))
    assert kinds(d) == [(DELETE_CHILDREN, "")] and d.status["childrenDeletedAt"] == iso(NOW)
    assert d.status["phase"] == "Succeeded" and d.events[-1][1] == "ChildrenDeleted"


def test_a_finished_job_without_ttl_does_nothing_and_changes_nothing():
    done = {"phase": "Failed", "reason": "Diverged", "message": "m", "observedGeneration": 1,
            "conditions": [VALIDATED, cond("Succeeded", "False", "Diverged")]}
    d = run(ftj(status=done))
    assert d.status == done and not d.actions and not d.events and d.requeue is None


@pytest.mark.parametrize("mode,finalizers,want", [
    ("All", [], ["finetune.fto.dev/s3-cleanup"]), (None, ["finetune.fto.dev/s3-cleanup"], []),
])
def test_the_clean_up_finalizer_follows_cleanup_on_delete_before_anything_else(mode, finalizers, want):
    obj = ftj(lifecycle={"cleanupOnDelete": mode} if mode else {})
    obj["metadata"]["finalizers"] = finalizers
    d = run(obj)
    assert [(a.kind, a.value) for a in d.actions] == [(PATCH_FINALIZERS, want)] and d.requeue == 0.2


def test_observed_generation_follows_the_object():
    d = run(ftj(status={"observedGeneration": 1, "conditions": [VALIDATING]}, generation=3),
            validate_pod=pod("Running"))
    assert d.status["observedGeneration"] == 3 and d.status["conditions"][0]["observedGeneration"] == 3


def test_gpu_seconds_are_written_at_most_every_minute_while_nothing_else_changes():
    fresh = running_status(gpuSeconds=10.0, gpuSecondsUpdatedAt=iso(NOW - 20), phase="Running",
                           message="attempt 1 of 4 is running", observedGeneration=1)
    d = run(ftj(status=fresh), job=job(active=1), pods=(pod(),))
    assert d.status["gpuSeconds"] == 10.0
    stale = dict(fresh, gpuSecondsUpdatedAt=iso(NOW - 61))
    d = run(ftj(status=stale), job=job(active=1), pods=(pod(),))
    assert d.status["gpuSeconds"] == pytest.approx(71.0)


def test_unsuspending_before_the_first_launch_launches_and_leaves_suspended():
    status = {"phase": "Suspended", "reason": "Suspended",
              "conditions": [VALIDATED, cond("Running", "False", "Suspended"), cond("Suspended", "True", "Suspended")]}
    d = run(ftj(status=status), config_map_exists=True)
    assert kinds(d) == [(CREATE, "Job")] and d.status["phase"] == "Queued"


def test_children_already_deleted_by_the_ttl_leave_nothing_to_do():
    done = {"phase": "Succeeded", "reason": "Trained", "completionTime": iso(NOW - 300), "childrenDeletedAt": iso(NOW),
            "conditions": [VALIDATED, cond("Succeeded", "True", "Trained")]}
    d = run(ftj(status=done, lifecycle={"ttlSecondsAfterFinished": 10}))
    assert not d.actions and d.requeue is None


def test_a_complete_job_whose_pods_were_listed_before_they_ended_waits_for_them():
    d = run(ftj(status=running_status()), job=job(conditions=[("Complete", "")]), pods=(pod("Running"),))
    assert d.status["phase"] == "Running" and d.requeue == 1.0 and not d.actions


def test_a_complete_job_whose_manifest_was_not_read_yet_asks_again_soon():
    d = run(ftj(status=running_status()), job=job(conditions=[("Complete", "")]), pods=(pod("Succeeded", OK_RESULT),))
    assert d.status["phase"] == "Running" and d.requeue == 1.0


def test_the_registered_model_version_carries_serving_target_gates_and_credentials():
    creds = {"secretRef": {"name": "s3"}}
    obj = ftj(status=running_status(), credentials=creds,
              output={"uri": "s3://out/bot/", "registerModelVersion": {
                  "model": "bot", "version": "v2", "servingTarget": {"name": "srv"}, "gates": {"minEvalLoss": 1}}})
    d = run(obj, job=job(conditions=[("Complete", "")]), pods=(pod("Succeeded", OK_RESULT),),
            verified=Verified(adapter_uri="s3://out/bot/adapter", digest="sha256:ab", manifest={}, files=1))
    body = d.actions[0].body
    assert body["metadata"]["name"] == "bot-v2" and body["spec"]["credentials"] == creds
    assert body["spec"]["servingTarget"] == {"name": "srv"} and body["spec"]["gates"] == {"minEvalLoss": 1}
    assert "ownerReferences" not in body["metadata"]


def test_a_progress_document_before_the_first_step_changes_no_progress():
    obj = ftj(status=running_status())
    d = run(obj, job=job(active=1), pods=(pod(),), progress={"step": 0})
    assert "progress" not in d.status


def test_capacity_must_be_observed_when_the_caps_are_on():
    with pytest.raises(ValueError, match="capacity was not observed"):
        run(ftj(status={"conditions": [VALIDATED]}), settings=CAPPED)
