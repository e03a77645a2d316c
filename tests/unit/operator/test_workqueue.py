"""The work queue: each key once, earliest due time wins, never two workers on one key."""
from finetune_operator.runtime.workqueue import WorkQueue


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
