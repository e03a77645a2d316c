"""Per-namespace caps: strict creation order, GPUs and job counts."""
from finetune_operator import quota
from finetune_operator.quota import Demand, decide


def d(name, gpus=1, t="2026-01-01T00:00:00Z"):
    return Demand((t, name), gpus)


def test_no_caps_admits_everything():
    assert decide(d("a"), [d("a")], 100, 100, None, None).admitted


def test_job_cap_counts_running_jobs():
    assert decide(d("b"), [d("b")], 1, 1, 2, None).admitted
    refused = decide(d("b"), [d("b")], 2, 2, 2, None)
    assert not refused.admitted and "2/2 jobs running" in refused.message


def test_jobs_start_in_creation_order_and_a_big_job_is_not_overtaken():
    big, small = d("big", 8, "2026-01-01T00:00:00Z"), d("small", 1, "2026-01-01T00:00:05Z")
    # 4 of 8 GPUs in use: the big job does not fit; the small one behind it must wait too.
    assert not decide(big, [big, small], 1, 4, None, 8).admitted
    refused = decide(small, [big, small], 1, 4, None, 8)
    assert not refused.admitted and "waiting behind big" in refused.message


def test_jobs_ahead_that_fit_take_capacity_first():
    first, second = d("first", 2, "2026-01-01T00:00:00Z"), d("second", 2, "2026-01-01T00:00:01Z")
    assert decide(first, [first, second], 0, 0, None, 3).admitted
    assert not decide(second, [first, second], 0, 0, None, 3).admitted


def test_a_job_larger_than_the_cap_says_so():
    refused = decide(d("huge", 16), [d("huge", 16)], 0, 0, None, 8)
    assert not refused.admitted and "at most 8" in refused.message


def test_finished_and_suspended_jobs_hold_no_capacity():
    running = {"spec": {}, "status": {"active": 1}}
    done = {"spec": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    suspended = {"spec": {"suspend": True}, "status": {}}
    assert [quota.job_holds_capacity(j) for j in (running, done, suspended)] == [True, False, False]


def test_job_gpus_is_pods_times_gpus_per_pod():
    job = {"spec": {"parallelism": 2, "template": {"spec": {"containers": [
        {"resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}}}
    assert quota.job_gpus(job) == 8
