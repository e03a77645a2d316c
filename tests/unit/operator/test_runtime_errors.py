"""The runtime: an unexpected error in a pass becomes a Warning Event and a ReconcileError
condition (with the back-off), a later good pass clears it, every pass and status write is
counted, and the echo of the runtime's own status write is not queued again."""
from __future__ import annotations

import json

import pytest

from finetune_operator import kube, metrics
from finetune_operator.handlers import watches
from finetune_operator.runtime import controller
from finetune_operator.runtime.controller import Kind, Runtime, error_condition


class Elector:
    is_leader = True


class Resp:
    def __init__(self, doc):
        self.data = json.dumps(doc).encode()


class FakeApi:
    """Just enough of CustomObjectsApi and CoreV1Api for one object."""

    def __init__(self, obj):
        self.obj, self.events, self.status_patches = obj, [], []

    def get_namespaced_custom_object(self, group, version, ns, plural, name, **_):
        return Resp(self.obj)

    def patch_namespaced_custom_object_status(self, group, version, ns, plural, name, body, **_):
        assert body["metadata"]["resourceVersion"] == self.obj["metadata"]["resourceVersion"]
        self.status_patches.append(body["status"])
        status = dict(self.obj.get("status") or {})
        status.update(body["status"])
        rv = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
        self.obj = {**self.obj, "metadata": {**self.obj["metadata"], "resourceVersion": rv}, "status": status}
        return Resp(self.obj)

    def create_namespaced_event(self, ns, body):
        self.events.append((body["type"], body["reason"], body["message"]))


def thing():
    return {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": "bot", "namespace": "team-a", "uid": "u", "generation": 2, "resourceVersion": "5"},
            "spec": {}, "status": {"phase": "Running", "conditions": []}}


class Boom:
    def __init__(self, obj, patch, event, settings, runtime):
        pass

    def reconcile(self):
        raise KeyError("spec.training")


class Fine:
    def __init__(self, obj, patch, event, settings, runtime):
        self.patch = patch

    def reconcile(self):
        return None


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi(thing())
    monkeypatch.setattr(kube, "custom", lambda: fake)
    monkeypatch.setattr(kube, "core", lambda: fake)
    return fake


def sample(counter, kind):
    return metrics.REGISTRY.get_sample_value(counter, {"kind": kind}) or 0.0


def test_an_unexpected_error_posts_a_warning_and_sets_the_reconcile_error_condition(api):
    runtime = Runtime(None, [Kind("finetunejobs", Boom)], Elector())
    passes, writes = sample("fto_operator_reconciles_total", "finetunejobs"), \
        sample("fto_operator_status_writes_total", "finetunejobs")
    runtime._process(("finetunejobs", "team-a", "bot"))
    assert api.events[0][:2] == ("Warning", "ReconcileError") and "KeyError" in api.events[0][2]
    cond = next(c for c in api.obj["status"]["conditions"] if c["type"] == "ReconcileError")
    assert cond["status"] == "True" and "retrying in 1s" in cond["message"] and cond["observedGeneration"] == 2
    assert sample("fto_operator_reconciles_total", "finetunejobs") == passes + 1
    assert sample("fto_operator_status_writes_total", "finetunejobs") == writes + 1


def test_the_back_off_doubles_from_one_second_to_a_minute(api):
    runtime = Runtime(None, [Kind("finetunejobs", Boom)], Elector())
    delays = [runtime._failed(("finetunejobs", "team-a", "bot"), KeyError("x")) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_a_good_pass_clears_the_reconcile_error_condition(api):
    Runtime(None, [Kind("finetunejobs", Boom)], Elector())._process(("finetunejobs", "team-a", "bot"))
    Runtime(None, [Kind("finetunejobs", Fine)], Elector())._process(("finetunejobs", "team-a", "bot"))
    cond = next(c for c in api.obj["status"]["conditions"] if c["type"] == "ReconcileError")
    assert (cond["status"], cond["reason"]) == ("False", "Reconciled")
    writes = len(api.status_patches)
    Runtime(None, [Kind("finetunejobs", Fine)], Elector())._process(("finetunejobs", "team-a", "bot"))
    assert len(api.status_patches) == writes, "a pass that changes nothing writes nothing"


@pytest.mark.parametrize("conditions,ok,changes", [
    ([], True, False),
    ([], False, True),
    ([{"type": "ReconcileError", "status": "False", "reason": "Reconciled"}], True, False),
])
def test_error_condition_changes_only_what_it_must(conditions, ok, changes):
    assert (error_condition(conditions, ok, "boom", 1, "t") is not None) is changes


def test_the_echo_of_our_own_status_write_is_not_queued_again(api, monkeypatch):
    runtime = Runtime(None, [Kind("finetunejobs", Boom, ignore_own_status_writes=True)], Elector())
    runtime._process(("finetunejobs", "team-a", "bot"))  # writes the ReconcileError condition
    queued = []
    monkeypatch.setattr(runtime, "enqueue", lambda *key, **_: queued.append(key))
    monkeypatch.setattr(watches, "RUNTIME", runtime)
    watches.finetunejob_changed(body=api.obj, type="MODIFIED")
    assert queued == []
    edited = {**api.obj, "metadata": {**api.obj["metadata"], "resourceVersion": "99", "generation": 3}}
    watches.finetunejob_changed(body=edited, type="MODIFIED")
    assert queued == [("finetunejobs", "team-a", "bot")]


def test_kinds_that_did_not_ask_still_see_their_own_writes(api):
    runtime = Runtime(None, [Kind("modelversions", Boom)], Elector())
    runtime._process(("modelversions", "team-a", "bot"))
    assert not runtime.is_own_status_write("modelversions", "team-a", "bot", api.obj["metadata"]["resourceVersion"])


def test_the_kind_contract_is_unchanged():
    kind = Kind("modelversions", Fine)
    assert (kind.plural, kind.ignore_own_status_writes) == ("modelversions", False)
    assert controller.Kind.__dataclass_fields__.keys() >= {"plural", "reconciler", "forget"}


# --- conflicts back off ----------------------------------------------------------------------------------------
def conflict():
    from kubernetes.client.exceptions import ApiException
    return ApiException(status=409, reason="Conflict")


def test_repeated_conflicts_on_one_object_back_off_exponentially_with_jitter(api):
    runtime = Runtime(None, [Kind("finetunejobs", Boom)], Elector())
    delays = [runtime._failed(("finetunejobs", "team-a", "bot"), conflict()) for _ in range(10)]
    assert 0.05 <= delays[0] < 0.15, "the first conflict retries soon"
    assert 5.0 <= delays[-1] < 15.0, f"ten in a row wait seconds, not 0.2 s: {delays}"
    assert api.events == [], "a conflict is not an error to report"


def test_a_successful_pass_resets_the_conflict_backoff(api):
    runtime = Runtime(None, [Kind("finetunejobs", Fine)], Elector())
    key = ("finetunejobs", "team-a", "bot")
    for _ in range(6):
        runtime._failed(key, conflict())
    runtime._process(key)
    assert runtime._failed(key, conflict()) < 0.2


@pytest.mark.parametrize("conflicts,rand,expected", [
    (1, 0.5, 0.1), (2, 0.5, 0.2), (4, 0.5, 0.8), (20, 0.5, 10.0),  # doubling, capped at 10 s
    (1, 0.0, 0.05), (1, 0.999, 0.1499),                            # jitter: x0.5 .. x1.5
])
def test_conflict_backoff_doubles_to_a_cap_and_is_jittered(conflicts, rand, expected):
    assert controller.conflict_backoff(conflicts, rand) == pytest.approx(expected, rel=1e-3)


def test_other_objects_do_not_share_an_objects_conflict_backoff(api):
    runtime = Runtime(None, [Kind("finetunejobs", Boom)], Elector())
    for _ in range(8):
        runtime._failed(("finetunejobs", "team-a", "bot"), conflict())
    assert runtime._failed(("finetunejobs", "team-b", "other"), conflict()) < 0.2
