"""The chart's scheduling allow-lists: one set of values feeds both the admission policy and the operator."""
from __future__ import annotations

import json

import pytest

from chartlib import find, render, run_helm, CHART


def operator_policy(objs) -> str:
    """FTO_SCHEDULING_POLICY as the operator's container gets it (from the release's ConfigMap)."""
    container = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ref = {e["name"]: e for e in container["env"]}["FTO_SCHEDULING_POLICY"]["valueFrom"]["configMapKeyRef"]
    return find(objs, "ConfigMap", ref["name"])["data"][ref["key"]]


def test_by_default_the_policy_is_enforced_and_the_operator_gets_the_same_lists():
    objs = render("--set-json", 'scheduling.namespaces={"team-a":{"priorityClassNames":["batch-high"]}}')
    policy = find(objs, "ValidatingAdmissionPolicy", "fto-finetune-operator-scheduling")
    find(objs, "ValidatingAdmissionPolicyBinding", "fto-finetune-operator-scheduling")
    env = json.loads(operator_policy(objs))
    assert env["allowed"]["tolerationKeys"] == ["nvidia.com/gpu"] and env["allowed"]["priorityClassNames"] == []
    assert env["namespaces"] == {"team-a": {"priorityClassNames": ["batch-high"]}}
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert json.loads(variables["perNamespace"])["team-a"] == {
        "priorityClassNames": ["batch-high"], "tolerationKeys": [], "nodeSelectorKeys": [], "annotationPrefixes": []}
    assert variables["tolerationKeys"].startswith('["nvidia.com/gpu"] + ')


def test_enforce_false_renders_no_policy_and_an_empty_operator_policy():
    objs = render("--set", "scheduling.enforce=false")
    assert not [o for o in objs if o["kind"] != "ConfigMap" and o["metadata"]["name"].endswith("-scheduling")]
    assert operator_policy(objs) == ""


def test_a_changed_allow_list_rolls_the_operator_pods():
    checksum = lambda *a: find(render(*a), "Deployment")["spec"]["template"]["metadata"]["annotations"][  # noqa: E731
        "checksum/scheduling"]
    assert checksum() != checksum("--set", "scheduling.allowed.priorityClassNames[0]=batch-low")


@pytest.mark.parametrize("args, words", [
    (["--set", "scheduling.allowed.priorityClassNames[0]=Not_A_Name"], "Not_A_Name"),
    (["--set", "scheduling.allowed.tolerationKey[0]=x"], "tolerationKey"),
    (["--set-json", 'scheduling.namespaces={"Team_A":{}}'], "Team_A"),
])
def test_values_schema_refuses_malformed_allow_lists(args, words):
    result = run_helm("template", "fto", str(CHART), *args, check=False)
    assert result.returncode != 0 and words in result.stderr
