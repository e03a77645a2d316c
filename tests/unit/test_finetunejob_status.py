"""Pure status logic of the FineTuneJob controller."""
import json

from finetune_api import progress
from finetune_operator import status as st


def pod(phase, message=None, exit_code=0):
    statuses = []
    if phase in ("Succeeded", "Failed"):
        statuses = [{"state": {"terminated": {"exitCode": exit_code, "message": message or ""}}}]
    return {"status": {"phase": phase, "containerStatuses": statuses}}


def test_trainer_termination_message_is_parsed_into_a_typed_outcome():
    msg = json.dumps({"reason": "DatasetInvalid", "exitCode": 11, "retryable": False, "message": "line 3: bad"})
    out = st.pod_outcome(pod("Failed", msg, 11))
    assert out.state == "failed" and out.reason == "DatasetInvalid" and not out.retryable
    assert out.message == "line 3: bad"


def test_a_pod_killed_without_a_message_counts_as_retryable():
    out = st.pod_outcome(pod("Failed", "", 137))
    assert out.retryable and out.reason == "PodFailed"


def test_job_state_follows_its_conditions():
    assert st.job_state(None) == "pending"
    assert st.job_state({"status": {"active": 1}}) == "running"
    assert st.job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "succeeded"
    assert st.job_state({"status": {"conditions": [{"type": "Failed", "status": "True",
                                                    "reason": "DeadlineExceeded"}]}}) == "failed"
    assert st.job_state({"spec": {"suspend": True}, "status": {}}) == "suspended"


def test_a_job_whose_pods_are_done_but_not_yet_marked_complete_is_finishing_not_pending():
    assert st.job_state({"status": {"succeeded": 1}}) == "finishing"
    assert st.job_state({"status": {"failed": 1}}) == "finishing"
    assert st.job_state({"status": {"active": 0, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"}]}}) == "finishing"
    assert st.job_state({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}}) == "finishing"
    assert st.job_state({"status": {}}) == "pending"


def test_condition_transition_time_moves_only_when_status_changes():
    c1 = st.condition([], "Validated", False, "Validating", "checking", 1, "t1")
    c2 = st.condition(c1, "Validated", False, "Validating", "still checking", 1, "t2")
    assert c2[0]["lastTransitionTime"] == "t1" and c2[0]["message"] == "still checking"
    c3 = st.condition(c2, "Validated", True, "DatasetValid", "ok", 2, "t3")
    assert c3[0]["lastTransitionTime"] == "t3" and c3[0]["observedGeneration"] == 2 and len(c3) == 1


def test_retry_backoff_doubles_and_is_capped():
    assert [st.retry_delay(a) for a in (1, 2, 3)] == [5, 10, 20]
    assert st.retry_delay(20) == 300


def test_progress_document_becomes_status_progress():
    p = progress.to_status({"step": 3, "totalSteps": 12, "trainLoss": 1.5, "etaSeconds": 40.7})
    assert p == {"step": 3, "totalSteps": 12, "display": "3/12", "percent": 25, "trainLoss": 1.5, "etaSeconds": 40}


def test_an_oom_killed_container_is_an_out_of_memory_failure():
    p = pod("Failed", "", 137)
    p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    out = st.pod_outcome(p)
    assert out.reason == "OutOfMemory" and "OOM-killed" in out.message


def test_out_of_memory_relaunches_split_micro_batches_only_when_the_policy_says_so():
    split = {"action": "SplitMicroBatch", "maxSplit": 8}
    assert st.out_of_memory_split(None, 1, 16) is None
    assert st.out_of_memory_split({"action": "Fail"}, 1, 16) is None
    assert [st.out_of_memory_split(split, n, 16) for n in (1, 2, 4, 8)] == [2, 4, 8, None]
    assert st.out_of_memory_split({"action": "SplitMicroBatch", "maxSplit": 6}, 4, 16) == 6
    assert st.out_of_memory_split(split, 2, 2) is None  # a 2-row micro-batch splits in 2 at most
