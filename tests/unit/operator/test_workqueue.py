"""The work queue: each key once, earliest due time wins, never two workers on one key, fair across
namespaces (round-robin, and one namespace cannot hold every worker)."""
import pytest

from finetune_operator.runtime.workqueue import WorkQueue, may_start


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_key_added_twice_is_processed_once():
    q = WorkQueue()
    q.add("a")
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.done("a")
    assert q.get(timeout=0) is None


def test_the_earliest_due_time_wins():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("a", delay=10)
    q.add("a", delay=1)
    clock.t = 1.0
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.t = 20
    assert q.get(timeout=0) is None, "the later entry was superseded"


def test_a_delayed_key_waits_for_its_time():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("later", delay=5)
    q.add("now")
    assert q.get(timeout=0) == "now"
    assert q.get(timeout=0) is None
    clock.t = 5
    assert q.get(timeout=0) == "later"


def test_a_key_changed_while_processing_runs_again_after_done_not_concurrently():
    q = WorkQueue()
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")  # a watch event while a worker reconciles it
    assert q.get(timeout=0) is None, "a second worker must not get the same key"
    q.done("a")
    assert q.get(timeout=0) == "a"


def test_close_wakes_waiting_workers():
    q = WorkQueue()
    q.close()
    assert q.get(timeout=5) is None


# --- fair across namespaces ----------------------------------------------------------------------------------
def key(ns, name):
    return ("modelversions", ns, name)


def test_one_namespaces_many_keys_do_not_starve_another_namespaces_key():
    q = WorkQueue()
    for i in range(50):
        q.add(key("tarpit", f"mv-{i}"))
    q.add(key("quiet", "job"))  # added last, behind fifty of the other namespace's keys
    taken = [q.get(timeout=0) for _ in range(2)]
    assert key("quiet", "job") in taken, "round-robin: the other namespace is served within one turn"


def test_namespaces_are_served_in_turn():
    q = WorkQueue()
    for i in range(3):
        q.add(key("a", f"x{i}"))
        q.add(key("b", f"x{i}"))
    order = []
    for _ in range(6):
        k = q.get(timeout=0)
        order.append(k[1])
        q.done(k)
    assert order == ["a", "b", "a", "b", "a", "b"]


def test_a_namespace_at_its_cap_leaves_the_other_workers_to_other_namespaces():
    q = WorkQueue(shard_limit=2)
    for i in range(10):
        q.add(key("tarpit", f"mv-{i}"))
    held = [q.get(timeout=0) for _ in range(2)]
    assert all(k[1] == "tarpit" for k in held)
    assert q.get(timeout=0) is None, "a third worker is not given to the same namespace"
    q.add(key("quiet", "job"))
    assert q.get(timeout=0) == key("quiet", "job")
    q.done(held[0])
    assert q.get(timeout=0)[1] == "tarpit", "a slot freed by done is taken again"


@pytest.mark.parametrize("in_shard,limit,allowed", [(0, 2, True), (1, 2, True), (2, 2, False), (50, None, True)])
def test_may_start_only_under_the_namespace_cap(in_shard, limit, allowed):
    assert may_start(in_shard, limit) is allowed


def test_a_waiting_worker_wakes_when_a_namespace_drops_below_its_cap():
    import threading
    q = WorkQueue(shard_limit=1)
    q.add(key("a", "x"))
    q.add(key("a", "y"))
    first = q.get(timeout=0)
    got = []
    waiter = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    waiter.start()
    q.done(first)
    waiter.join(timeout=5)
    assert got and got[0][1] == "a"
