"""Tenants cannot schedule their trainer pods where the platform team has not allowed them.

A FineTuneJob's spec.resources (priorityClassName, tolerations, nodeSelector, gpuProduct, affinity) and
its pod-annotation passthrough reach the trainer pods. Before the chart's scheduling policy, a tenant
with `edit` could ask for `system-node-critical` priority (preempting the cluster's own daemons) or
tolerate every taint (landing on control-plane and unreachable nodes). Each test acts as a tenant: a
client-certificate user or an impersonated one bound to `edit` in team-a or team-b, with the chart's
admission policies in force.
"""
from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from chart_helpers import CHART, helm
from helpers import wait_for
from tenancy import GROUP, VERSION, apply, as_user, install_tenancy, job

TEAM_A_CLASS = "team-a-batch"


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3):
    for t in install_tenancy(cluster, core, s3):
        # Per-namespace lists on top of the chart's cluster-wide defaults (the namespaces' names are
        # only known once installed).
        values = {"scheduling": {"namespaces": {t.team_a: {"priorityClassNames": [TEAM_A_CLASS],
                                                           "annotationPrefixes": ["sidecar.istio.io/"]}}}}
        upgraded = helm(cluster, "upgrade", t.release, str(CHART), "--namespace", t.system, "--reuse-values",
                        "-f", "-", input_=yaml.safe_dump(values))
        assert upgraded.returncode == 0, upgraded.stderr
        wait_for(lambda: dry_run(cluster, t, t.team_a, job(cluster, "probe", t.bucket,
                                                             resources__priorityClassName=TEAM_A_CLASS)).returncode == 0,
                 what="the upgraded scheduling policy to be active")
        yield t


def editor(t, team: str) -> tuple[str, list[str]]:
    return f"{team}-dev-{t.tag}", [f"{team}-{t.tag}"]


def dry_run(cluster, t, ns: str, body: dict, team: str = "team-a"):
    user, groups = editor(t, team)
    return as_user(cluster, user, groups, "apply", "--dry-run=server", "-n", ns, "-f", "-", stdin=json.dumps(body))


def test_a_tenant_cannot_run_trainer_pods_at_system_node_critical_priority(cluster, tenancy, user_api):
    alice = client.CustomObjectsApi(user_api(f"alice-{tenancy.tag}", (f"team-a-{tenancy.tag}",)))
    body = job(cluster, "critical", tenancy.bucket, resources__priorityClassName="system-node-critical")
    with pytest.raises(ApiException) as refused:
        alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", body)
    assert refused.value.status in (403, 422)
    assert (f"spec.resources.priorityClassName system-node-critical is not allowed in namespace {tenancy.team_a} "
            f"(allowed: {TEAM_A_CLASS})") in refused.value.body


def test_a_tenant_cannot_tolerate_every_taint(cluster, tenancy, user_api):
    alice = client.CustomObjectsApi(user_api(f"alice-{tenancy.tag}", (f"team-a-{tenancy.tag}",)))
    for toleration in ({"operator": "Exists"}, {"key": "", "operator": "Exists", "effect": "NoExecute"}):
        body = job(cluster, "everywhere", tenancy.bucket, resources__tolerations=[toleration])
        with pytest.raises(ApiException) as refused:
            alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", body)
        assert refused.value.status in (403, 422)
        assert "tolerates every" in refused.value.body and "taint" in refused.value.body


@pytest.mark.parametrize("resources, words", [
    ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
     "taint key node-role.kubernetes.io/control-plane is not allowed"),
    ({"nodeSelector": {"kubernetes.io/hostname": "fto-control-plane"}},
     "node label kubernetes.io/hostname is not allowed"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}]}}}},
     "spec.resources.affinity.nodeAffinity uses a node label that is not allowed"),
])
def test_scheduling_fields_off_the_allow_list_are_refused(cluster, tenancy, resources, words):
    body = job(cluster, "pinned", tenancy.bucket, **{f"resources__{k}": v for k, v in resources.items()})
    refused = dry_run(cluster, tenancy, tenancy.team_a, body)
    assert refused.returncode != 0 and words in refused.stderr, refused.stderr


def test_what_the_platform_team_allows_is_admitted_and_per_namespace_lists_stay_in_their_namespace(cluster, tenancy):
    allowed = {"resources__gpuProduct": "NVIDIA-H100-80GB-HBM3",
               "resources__tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
               "resources__nodeSelector": {"topology.kubernetes.io/zone": "zone-a"}}
    body = job(cluster, "allowed", tenancy.bucket, **allowed)
    assert dry_run(cluster, tenancy, tenancy.team_b, body, team="team-b").returncode == 0
    mine = job(cluster, "mine", tenancy.bucket, resources__priorityClassName=TEAM_A_CLASS, **allowed)
    assert dry_run(cluster, tenancy, tenancy.team_a, mine).returncode == 0
    theirs = dry_run(cluster, tenancy, tenancy.team_b, mine, team="team-b")
    assert theirs.returncode != 0
    assert f"priorityClassName {TEAM_A_CLASS} is not allowed in namespace {tenancy.team_b} (allowed: none)" in theirs.stderr


@pytest.mark.parametrize("ns_attr, team, pods, refused_key", [
    ("team_a", "team-a", {"container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"},
     "container.apparmor.security.beta.kubernetes.io/trainer"),
    ("team_b", "team-b", {"sidecar.istio.io/inject": "false"}, "sidecar.istio.io/inject"),  # team-a's prefix only
    ("team_a", "team-a", {"sidecar.istio.io/inject": "false"}, None),
])
def test_pod_annotations_need_an_allowed_prefix(cluster, tenancy, ns_attr, team, pods, refused_key):
    body = job(cluster, "annotated", tenancy.bucket)
    body["metadata"]["annotations"] = {"finetune.fto.dev/pod-annotations": json.dumps(pods)}
    result = dry_run(cluster, tenancy, getattr(tenancy, ns_attr), body, team=team)
    if refused_key is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and f"pod annotation {refused_key} is not allowed" in result.stderr, result.stderr


@pytest.mark.parametrize("resources, words", [
    ({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "x"}]},
     "value must be empty with operator Exists"),
    ({"tolerations": [{"key": "bad key!", "operator": "Exists"}]}, "must be a label key"),
    ({"nodeSelector": {"pool": "not a value!"}}, "nodeSelector values must be label values"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "Maybe"}]}]}}}}, "Unsupported value"),
])
def test_scheduling_syntax_is_checked_by_the_crd(cluster, tenancy, resources, words):
    body = job(cluster, "syntax", tenancy.bucket, **{f"resources__{k}": v for k, v in resources.items()})
    refused = dry_run(cluster, tenancy, tenancy.team_a, body)
    assert refused.returncode != 0 and words in refused.stderr, refused.stderr


def test_pod_affinity_cannot_reach_into_another_namespace(cluster, tenancy, user_api):
    alice = client.CustomObjectsApi(user_api(f"alice-{tenancy.tag}", (f"team-a-{tenancy.tag}",)))
    term = {"labelSelector": {"matchLabels": {"app": "support-bot"}}, "topologyKey": "kubernetes.io/hostname",
            "namespaceSelector": {}, "namespaces": [tenancy.team_b]}
    body = job(cluster, "near-b", tenancy.bucket,
               resources__affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}})
    with pytest.raises(ApiException) as strict:
        alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", body,
                                              field_validation="Strict", dry_run="All")
    assert strict.value.status == 400 and "namespaceSelector" in strict.value.body
    created = alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", body, dry_run="All")
    kept = created["spec"]["resources"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert "namespaceSelector" not in kept and "namespaces" not in kept


def test_a_job_admitted_before_the_lists_were_tightened_can_still_be_cancelled(cluster, tenancy):
    user, groups = editor(tenancy, "team-a")
    body = job(cluster, "before", tenancy.bucket, resources__priorityClassName=TEAM_A_CLASS)
    assert apply(cluster, tenancy.team_a, body, user, groups).returncode == 0
    try:
        values = {"scheduling": {"namespaces": {tenancy.team_a: {"priorityClassNames": []}}}}
        assert helm(cluster, "upgrade", tenancy.release, str(CHART), "--namespace", tenancy.system, "--reuse-values",
                    "-f", "-", input_=yaml.safe_dump(values)).returncode == 0
        wait_for(lambda: dry_run(cluster, tenancy, tenancy.team_a, job(cluster, "after", tenancy.bucket,
                                 resources__priorityClassName=TEAM_A_CLASS)).returncode != 0,
                 what="the tightened scheduling policy to be active")
        cancel = as_user(cluster, user, groups, "patch", "finetunejob", "before", "-n", tenancy.team_a, "--type=merge",
                         "-p", json.dumps({"spec": {"lifecycle": {"cancel": True}}}))
        assert cancel.returncode == 0, cancel.stderr
    finally:
        as_user(cluster, None, [], "delete", "finetunejob", "before", "-n", tenancy.team_a, "--wait=false")
        values = {"scheduling": {"namespaces": {tenancy.team_a: {"priorityClassNames": [TEAM_A_CLASS],
                                                                 "annotationPrefixes": ["sidecar.istio.io/"]}}}}
        helm(cluster, "upgrade", tenancy.release, str(CHART), "--namespace", tenancy.system, "--reuse-values",
             "-f", "-", input_=yaml.safe_dump(values))


@pytest.mark.parametrize("field, uri", [
    ("dataset__uri", "s3://{bucket}/data/../../other-team/train.jsonl"),
    ("output__uri", "s3://{bucket}//out/x/"),
    ("dataset__validationUri", "s3://{bucket}/data/./val.jsonl"),
])
def test_s3_uris_with_dot_or_empty_segments_are_refused_at_admission(cluster, tenancy, field, uri):
    body = job(cluster, "dots", tenancy.bucket, **{field: uri.format(bucket=tenancy.bucket)})
    body["spec"]["dataset"].pop("validationSplit", None)
    refused = dry_run(cluster, tenancy, tenancy.team_a, body)
    assert refused.returncode != 0 and "must not have '..', '.' or empty ('//') path segments" in refused.stderr, \
        refused.stderr
