"""A job asking for scheduling fields its namespace may not use fails before any pod exists."""
from __future__ import annotations

import dataclasses

import pytest

from finetune_operator.finetunejob import decide as D

from ftj_fixtures import NOW, SETTINGS, Preflight, ftj, snapshot

POLICY = {"allowed": {"priorityClassNames": ["batch-low"], "tolerationKeys": ["nvidia.com/gpu"],
                      "nodeSelectorKeys": [], "annotationPrefixes": []},
          "namespaces": {"team-a": {"priorityClassNames": ["team-a-high"]}}}


def decide(resources: dict, policy=POLICY):
    settings = dataclasses.replace(SETTINGS, scheduling_policy=policy)
    return D.decide(snapshot(ftj(resources=resources), settings, config_map_exists=False, preflight=Preflight()), NOW)


@pytest.mark.parametrize("resources, field", [
    ({"priorityClassName": "system-node-critical"}, "spec.resources.priorityClassName system-node-critical"),
    ({"tolerations": [{"operator": "Exists"}]}, "spec.resources.tolerations[0] has no key"),
    ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
     "spec.resources.tolerations[0]"),
])
def test_a_disallowed_scheduling_field_fails_the_job_naming_the_field_and_creates_nothing(resources, field):
    d = decide(resources)
    assert not d.actions
    assert d.status["phase"] == "Failed"
    validated = next(c for c in d.status["conditions"] if c["type"] == "Validated")
    assert (validated["status"], validated["reason"]) == ("False", "SchedulingNotAllowed")
    assert field in validated["message"]


@pytest.mark.parametrize("resources", [{"priorityClassName": "batch-low"}, {"priorityClassName": "team-a-high"},
                                       {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}, {}])
def test_allowed_scheduling_fields_go_on_to_the_validate_pod(resources):
    d = decide(resources)
    assert d.status.get("phase") != "Failed"
    assert all(c["reason"] != "SchedulingNotAllowed" for c in d.status.get("conditions") or [])
