"""The chart renders one S3 mapping for admission and the operator, and the Secrets policy (issue 13,
findings 3 and 10)."""
from __future__ import annotations

import json

from chartlib import find, render

from finetune_operator import s3access

VALUES = ["--set", "s3AllowList.enabled=true", "--set", "s3AllowList.buckets={shared}",
          "--set", "s3AllowList.namespaces.team-a.prefixes={s3://shared/team-a,s3://models/}",
          "--set", "s3AllowList.namespaces.team-a.operatorIdentity=true",
          "--set", "s3AllowList.namespaces.team-b.prefixes={s3://shared/team-b/}",
          "--set", "s3AllowList.namespaces.team-c.operatorIdentity=true"]


def _env(objs) -> dict:
    container = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_operator_reads_the_same_mapping_admission_applies():
    objs = render(*VALUES)
    policy = s3access.parse(_env(objs)["FTO_S3_POLICY"])
    assert policy.enabled and policy.buckets == ("shared",)
    assert policy.of("team-a").prefixes == (("shared", "team-a/"), ("models", ""))
    allow = find(objs, "ValidatingAdmissionPolicy", "fto-finetune-operator-s3-allowlist")
    per_ns = json.loads({v["name"]: v["expression"] for v in allow["spec"]["variables"]}["perNamespace"])
    assert per_ns["team-a"]["prefixes"] == ["s3://shared/team-a/", "s3://models/"]  # each ends in "/"
    assert per_ns["team-b"]["prefixes"] == ["s3://shared/team-b/"]


def test_only_namespaces_with_an_identity_and_prefixes_may_omit_credentials():
    objs = render(*VALUES)
    secrets = find(objs, "ValidatingAdmissionPolicy", "fto-finetune-operator-secrets")
    variables = {v["name"]: v["expression"] for v in secrets["spec"]["variables"]}
    assert json.loads(variables["identityNamespaces"]) == ["team-a"]
    checks = [v["expression"] for v in secrets["spec"]["validations"]]
    assert sum("authorizer.group('').resource('secrets')" in c and "check('get')" in c for c in checks) == 2
    policy = s3access.parse(_env(objs)["FTO_S3_POLICY"])
    assert [ns for ns in ("team-a", "team-b", "team-c") if s3access.identity_refusal(policy, ns) is None] == ["team-a"]


def test_the_secrets_policy_is_on_by_default_and_follows_the_admission_namespace_selector():
    objs = render("--set", "admission.namespaceSelector.matchLabels.tenant=yes")
    binding = find(objs, "ValidatingAdmissionPolicyBinding", "fto-finetune-operator-secrets")
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {"matchLabels": {"tenant": "yes"}}
    assert s3access.identity_refusal(s3access.parse(_env(objs)["FTO_S3_POLICY"]), "anywhere") is not None


def test_the_inference_examples_token_secret_is_opted_in_for_the_operator():
    token = find(render("--set", "inferenceExample.enabled=true"), "Secret", "finetune-inference-agent-token")
    assert token["metadata"]["labels"]["finetune.fto.dev/credentials"] == "true"
