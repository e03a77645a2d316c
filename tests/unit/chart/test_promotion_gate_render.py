"""The chart's half of the promotion gate (issue 13, findings 1 and 9), rendered: where the production
records live and who may write them, and which fields of an approved object the policy guards.
The policy's CEL itself runs in tests/e2e/test_tenant_promotion_gate.py (a real apiserver)."""
from __future__ import annotations

import json

import pytest
import yaml

from chartlib import CHART, find, render

RELEASE_NS = "fto-system"


def spec_fields(crd: str) -> set[str]:
    doc = yaml.safe_load((CHART / "crds" / f"{crd}.finetune.fto.dev.yaml").read_text())
    return set(doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


def variable(policy: dict, name: str) -> str:
    return next(v["expression"] for v in policy["spec"]["variables"] if v["name"] == name)


def test_the_records_role_is_in_the_release_namespace_and_tenant_configmaps_are_not_patched():
    objs = render()
    role = find(objs, "Role", "fto-finetune-operator-records")
    assert role["metadata"]["namespace"] == RELEASE_NS
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                              "verbs": ["get", "create", "patch", "update"]}]
    binding = find(objs, "RoleBinding", "fto-finetune-operator-records")
    assert binding["metadata"]["namespace"] == RELEASE_NS and binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fto-finetune-operator",
                                    "namespace": RELEASE_NS}]
    cluster_role = find(objs, "ClusterRole", "fto-finetune-operator")
    configmaps = [r for r in cluster_role["rules"] if "configmaps" in r["resources"]]
    assert configmaps and all(not {"patch", "update"} & set(r["verbs"]) for r in configmaps)


def test_the_operator_is_told_to_keep_the_records_in_the_release_namespace():
    args = find(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--record-namespace") + 1] == RELEASE_NS


@pytest.mark.parametrize("behaviour, crd, variable_name, path, allowed", [
    ("every ModelVersion spec field but stage is guarded", "modelversions", "versionChanges", "spec", "stage"),
    ("every FineTuneJob spec field is guarded", "finetunejobs", "jobChanges", "spec", "output"),
])
def test_every_spec_field_of_an_approved_object_is_guarded(behaviour, crd, variable_name, path, allowed):
    policy = find(render(), "ValidatingAdmissionPolicy", "fto-finetune-operator-promotion")
    expression = variable(policy, variable_name)
    for field in spec_fields(crd) - {allowed}:
        assert f"object.{path}.{field} != oldObject.{path}.{field}" in expression, field
        assert f"['{path}.{field}']" in expression, field


def test_an_approved_jobs_registration_is_guarded_field_by_field_and_the_way_out_stays_open():
    policy = find(render(), "ValidatingAdmissionPolicy", "fto-finetune-operator-promotion")
    jobs = variable(policy, "jobChanges")
    for field in ("gates", "model", "servingTarget", "version"):
        assert f"['spec.output.registerModelVersion.{field}']" in jobs
    # The registration's stage may leave production (candidate is its only other value); a version may
    # only be archived.
    assert "['spec.output.uri']" in jobs and "registerModelVersion.stage" not in jobs
    assert "object.spec.stage != 'archived'" in variable(policy, "versionChanges")


def test_the_approved_object_rule_names_the_fields_and_the_group():
    policy = find(render("--set", "promotion.group=ml-release"), "ValidatingAdmissionPolicy",
                  "fto-finetune-operator-promotion")
    rule = next(v for v in policy["spec"]["validations"] if "approvedChanges" in v["expression"])
    assert rule["expression"] == ("!variables.wasProduction || variables.mayPromote || "
                                  "size(variables.approvedChanges) == 0")
    assert "variables.approvedChanges.join(', ')" in rule["messageExpression"]
    assert "approved for production needs membership of group ml-release" in json.dumps(rule)
