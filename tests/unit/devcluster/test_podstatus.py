import pytest

from devcluster.processnode import podstatus
from devcluster.processnode.podstatus import ContainerRecord as C


def rec(state, code=None, restarts=0, ready=False):
    return C("c", "busybox", state=state, exit_code=code, restart_count=restarts, ready=ready)


@pytest.mark.parametrize("init, main, policy, want", [
    ([], [rec("waiting")], "Never", "Pending"),
    ([rec("running")], [rec("waiting")], "Never", "Pending"),
    ([rec("terminated", 1)], [rec("waiting")], "Never", "Failed"),
    ([rec("terminated", 1)], [rec("waiting")], "OnFailure", "Pending"),
    ([], [rec("running")], "Never", "Running"),
    ([], [rec("terminated", 0)], "Never", "Succeeded"),
    ([], [rec("terminated", 2)], "Never", "Failed"),
    ([], [rec("terminated", 0), rec("running")], "Never", "Running"),
    ([], [rec("terminated", 0)], "Always", "Running"),
    ([], [rec("waiting", restarts=3)], "Always", "Running"),
])
def test_phase_follows_kubelet_rules(init, main, policy, want):
    assert podstatus.phase(init, main, policy) == want


def test_completed_pod_is_not_ready_and_keeps_pod_scheduled():
    pod = {"spec": {"restartPolicy": "Never"},
           "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"}]}}
    done = C("main", "busybox", state="terminated", exit_code=0, reason="Completed", message="bye")
    status = podstatus.build(pod, [], [done], "127.2.0.2", "127.0.0.1", "t1")
    conds = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Succeeded"
    assert conds["PodScheduled"]["lastTransitionTime"] == "t0"
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["message"] == "bye"
    assert status["podIP"] == "127.2.0.2"
