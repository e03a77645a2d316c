"""Repeated Events fold into one (count, lastTimestamp), as client-go's EventCorrelator does."""
from __future__ import annotations

import datetime

import pytest

from finetune_operator.runtime import events

OBJ = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "ModelVersion",
       "metadata": {"name": "bot-v2", "namespace": "team", "uid": "u-1"}}


class ApiError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeCore:
    """Events by name; create answers 409 for a name that exists, as the apiserver does."""

    def __init__(self, deny_patch: bool = False):
        self.events, self.deny_patch = {}, deny_patch

    def create_namespaced_event(self, ns, body):
        name = body["metadata"]["name"]
        if name in self.events:
            raise ApiError(409)
        self.events[name] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}

    def read_namespaced_event(self, name, ns):
        if self.deny_patch:
            raise ApiError(403)
        return self.events[name]

    def patch_namespaced_event(self, name, ns, body):
        current = self.events[name]
        assert body["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
        rv = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.events[name] = {**current, **{k: v for k, v in body.items() if k != "metadata"},
                             "metadata": {**current["metadata"], "resourceVersion": rv}}


def test_the_same_warning_posted_many_times_is_one_event_with_a_count():
    core = FakeCore()
    for _ in range(27):
        events.post(core, OBJ, "Warning", "AnalysisFailed", "rollback query blind: Prometheus answered HTTP 500")
    (event,) = core.events.values()
    assert event["count"] == 27 and event["firstTimestamp"] <= event["lastTimestamp"]


@pytest.mark.parametrize("behaviour, other", [
    ("another message", ("Warning", "AnalysisFailed", "rollback query blind: the query had no data")),
    ("another reason", ("Warning", "AnalysisNoData", "rollback query blind: Prometheus answered HTTP 500")),
    ("another type", ("Normal", "AnalysisFailed", "rollback query blind: Prometheus answered HTTP 500")),
])
def test_events_that_differ_are_kept_apart(behaviour, other):
    core = FakeCore()
    events.post(core, OBJ, "Warning", "AnalysisFailed", "rollback query blind: Prometheus answered HTTP 500")
    events.post(core, OBJ, *other)
    assert sorted(e["count"] for e in core.events.values()) == [1, 1]


def test_the_same_event_about_another_object_is_its_own():
    other = {**OBJ, "metadata": {**OBJ["metadata"], "uid": "u-2"}}
    assert events.event_name(OBJ, "Warning", "R", "m") != events.event_name(other, "Warning", "R", "m")
    assert events.event_name(OBJ, "Warning", "R", "m") == events.event_name(OBJ, "Warning", "R", "m")


def test_without_get_or_patch_on_events_each_post_is_a_new_event():
    core = FakeCore(deny_patch=True)
    for _ in range(3):
        events.post(core, OBJ, "Warning", "AnalysisFailed", "blind")
    assert len(core.events) == 3 and all(e["count"] == 1 for e in core.events.values())


def test_bump_counts_one_more_and_moves_the_last_timestamp():
    later = datetime.datetime(2027, 1, 15, 8, 5, tzinfo=datetime.timezone.utc)
    patch = events.bump({"count": 4, "metadata": {"resourceVersion": "9"}}, later)
    assert patch == {"metadata": {"resourceVersion": "9"}, "count": 5, "lastTimestamp": "2027-01-15T08:05:00Z"}
    # the kubernetes client's to_dict() spells it resource_version
    assert events.bump({"count": 1, "metadata": {"resource_version": "3"}}, later)["metadata"] == {
        "resourceVersion": "3"}
