"""Deadlines, TTLs, GPU-seconds and the loss history: pure time arithmetic."""
from finetune_operator import status as st

T0 = st.parse_time("2026-01-01T00:00:00Z")


def test_deadline_counts_from_the_first_start():
    spec = {"lifecycle": {"activeDeadlineSeconds": 600}}
    assert st.deadline_left(spec, None, T0) == 600
    assert st.deadline_left(spec, "2026-01-01T00:00:00Z", T0 + 100) == 500
    assert st.deadline_left({}, "2026-01-01T00:00:00Z", T0) is None


def test_ttl_after_finished():
    spec = {"lifecycle": {"ttlSecondsAfterFinished": 60}}
    assert st.ttl_left(spec, "2026-01-01T00:00:00Z", T0 + 61) < 0
    assert st.ttl_left(spec, None, T0) is None
    assert st.ttl_left({}, "2026-01-01T00:00:00Z", T0) is None


def pod(start, finished=None):
    cs = [{"state": {"terminated": {"finishedAt": finished}}}] if finished else [{"state": {"running": {}}}]
    return {"status": {"startTime": start, "containerStatuses": cs}}


def test_gpu_seconds_count_each_pod_from_its_start_or_the_last_count():
    pods = [pod("2026-01-01T00:00:00Z"), pod("2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z")]
    assert st.gpu_seconds_since(pods, 2, None, T0 + 60) == (60 + 30) * 2
    assert st.gpu_seconds_since(pods, 2, T0 + 40, T0 + 60) == 20 * 2, "finished pods add nothing new"


def test_history_keeps_one_point_per_step_and_stays_bounded():
    history = []
    for step in range(1, 500):
        history = st.append_history(history, {"step": step, "trainLoss": 1.0 / step})
        history = st.append_history(history, {"step": step, "trainLoss": 1.0 / step})
    assert len(history) <= 200 and history[-1]["step"] == 499 and history[0]["step"] == 1
    assert [p["step"] for p in history] == sorted(p["step"] for p in history)
