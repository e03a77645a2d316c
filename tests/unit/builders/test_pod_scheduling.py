"""The scheduling policy: which tenant fields reach the trainer pods, and the refusal the reconciler reports."""
from __future__ import annotations

import copy
import json

import pytest

from finetune_operator.builders import names, scheduling, trainer_job, validate_pod
from finetune_operator.builders.settings import OperatorSettings

POLICY = {"allowed": {"priorityClassNames": ["batch-low"], "tolerationKeys": ["nvidia.com/gpu"],
                      "nodeSelectorKeys": ["nvidia.com/gpu.product", "pool"], "annotationPrefixes": ["sidecar.istio.io/"]},
          "namespaces": {"team-a": {"priorityClassNames": ["team-a-high"], "annotationPrefixes": ["fto.dev/fake-"]}}}
ENFORCED = OperatorSettings(scheduling_policy=POLICY)
FTJ = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "FineTuneJob",
       "metadata": {"name": "bot", "namespace": "team-a", "uid": "uid-1"},
       "spec": {"baseModel": {"name": "m", "uri": "s3://m/m/"}, "dataset": {"uri": "s3://d/t.jsonl", "format": "text"},
                "resources": {"gpusPerNode": 1, "nodes": 1}, "lifecycle": {}, "output": {"uri": "s3://o/bot/"}}}
EVERYTHING = [{"operator": "Exists"}]
CROSS_NS_AFFINITY = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname",
     "namespaceSelector": {}}]}}
CONTROL_PLANE_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}]}}}
POOL_AFFINITY = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
    {"weight": 1, "preference": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}}]}}


def ftj(namespace="team-a", annotations=None, **resources):
    obj = copy.deepcopy(FTJ)
    obj["metadata"]["namespace"] = namespace
    obj["spec"]["resources"].update(resources)
    if annotations:
        obj["metadata"]["annotations"] = {names.POD_ANNOTATIONS_ANNOTATION: json.dumps(annotations)}
    return obj


def pod_spec(obj, settings=ENFORCED):
    return trainer_job.trainer_job(obj, 1, settings)["spec"]["template"]["spec"]


def pod_annotations(obj, settings=ENFORCED):
    return trainer_job.trainer_job(obj, 1, settings)["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize("resources, namespace, field, expected", [
    # allowed: kept as asked
    ({"priorityClassName": "batch-low"}, "team-b", "priorityClassName", "batch-low"),
    ({"priorityClassName": "team-a-high"}, "team-a", "priorityClassName", "team-a-high"),
    ({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}, "team-a", "tolerations",
     [{"key": "nvidia.com/gpu", "operator": "Exists"}]),
    ({"gpuProduct": "H100", "nodeSelector": {"pool": "a"}}, "team-a", "nodeSelector",
     {"pool": "a", "nvidia.com/gpu.product": "H100"}),
    ({"affinity": POOL_AFFINITY}, "team-a", "affinity", POOL_AFFINITY),
    # not allowed: dropped
    ({"priorityClassName": "system-node-critical"}, "team-a", "priorityClassName", None),
    ({"priorityClassName": "team-a-high"}, "team-b", "priorityClassName", None),  # another namespace's list
    ({"tolerations": EVERYTHING}, "team-a", "tolerations", None),
    ({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}, "team-a",
     "tolerations", None),
    ({"nodeSelector": {"kubernetes.io/hostname": "node-1", "pool": "a"}}, "team-a", "nodeSelector", {"pool": "a"}),
    ({"affinity": CONTROL_PLANE_AFFINITY}, "team-a", "affinity", None),
    ({"affinity": CROSS_NS_AFFINITY}, "team-a", "affinity", None),
])
def test_the_trainer_pod_keeps_only_the_scheduling_fields_the_namespace_allows(resources, namespace, field, expected):
    assert pod_spec(ftj(namespace, **resources)).get(field) == expected


@pytest.mark.parametrize("resources, field, expected", [
    ({"priorityClassName": "system-node-critical"}, "priorityClassName", "system-node-critical"),
    ({"affinity": CONTROL_PLANE_AFFINITY}, "affinity", CONTROL_PLANE_AFFINITY),
    # refused even with no policy configured
    ({"tolerations": EVERYTHING + [{"key": "nvidia.com/gpu", "operator": "Exists"}]}, "tolerations",
     [{"key": "nvidia.com/gpu", "operator": "Exists"}]),
    ({"affinity": CROSS_NS_AFFINITY}, "affinity", None),
])
def test_without_a_policy_only_keyless_tolerations_and_cross_namespace_affinity_are_dropped(resources, field, expected):
    assert pod_spec(ftj(**resources), OperatorSettings()).get(field) == expected


@pytest.mark.parametrize("namespace, asked, kept", [
    ("team-a", {"sidecar.istio.io/inject": "false", "fto.dev/fake-duration": "2s"},
     {"sidecar.istio.io/inject", "fto.dev/fake-duration"}),
    ("team-b", {"sidecar.istio.io/inject": "false", "fto.dev/fake-duration": "2s"}, {"sidecar.istio.io/inject"}),
    ("team-a", {"container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"}, set()),
])
def test_pod_annotations_pass_through_only_with_an_allowed_prefix(namespace, asked, kept):
    obj = ftj(namespace, annotations=asked)
    for manifest in (trainer_job.trainer_job(obj, 1, ENFORCED), validate_pod.validate_pod(obj, ENFORCED)):
        meta = manifest["spec"]["template"]["metadata"] if manifest["kind"] == "Job" else manifest["metadata"]
        assert set(asked) & set(meta["annotations"]) == kept


def test_a_tenant_cannot_override_the_operators_own_pod_annotations():
    obj = ftj(annotations={"prometheus.io/port": "1", "finetune.fto.dev/finetunejob": "other"})
    assert pod_annotations(obj, OperatorSettings())["prometheus.io/port"] == str(ENFORCED.metrics_port)
    assert pod_annotations(obj, OperatorSettings())["finetune.fto.dev/finetunejob"] == "bot"


@pytest.mark.parametrize("obj, policy, words", [
    (ftj(priorityClassName="system-node-critical"), POLICY,
     ["spec.resources.priorityClassName system-node-critical is not allowed", "batch-low, team-a-high"]),
    (ftj(tolerations=EVERYTHING), None, ["spec.resources.tolerations[0] has no key"]),
    (ftj(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "x"}]), POLICY,
     ["spec.resources.tolerations[0].key dedicated is not allowed", "nvidia.com/gpu"]),
    (ftj(gpuProduct="H100"), {"allowed": {}}, ["spec.resources.gpuProduct (node label nvidia.com/gpu.product)",
                                               "none are allowed in this namespace"]),
    (ftj(nodeSelector={"kubernetes.io/hostname": "n1"}), POLICY, ["spec.resources.nodeSelector key kubernetes.io/hostname"]),
    (ftj(affinity=CONTROL_PLANE_AFFINITY), POLICY, ["node label node-role.kubernetes.io/control-plane is not allowed"]),
    (ftj(affinity=CROSS_NS_AFFINITY), None, ["pod (anti-)affinity may only select pods of the job's own namespace"]),
    (ftj("team-b", annotations={"fto.dev/fake-duration": "1s"}), POLICY,
     ["pod annotation fto.dev/fake-duration is not allowed", "sidecar.istio.io/"]),
])
def test_a_job_asking_for_what_is_not_allowed_is_refused_naming_the_field(obj, policy, words):
    reason, message = scheduling.refusal(obj, policy, (names.POD_ANNOTATIONS_ANNOTATION,))
    assert reason == "SchedulingNotAllowed"
    for w in words:
        assert w in message
    assert message.endswith("ask the platform team to allow it, or remove it from the job")


@pytest.mark.parametrize("obj, policy", [
    (ftj(), POLICY),
    (ftj(priorityClassName="team-a-high", tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
         gpuProduct="H100", affinity=POOL_AFFINITY, annotations={"fto.dev/fake-duration": "1s"}), POLICY),
    (ftj(priorityClassName="system-node-critical", annotations={"anything/at-all": "1"}), None),
])
def test_a_job_within_its_namespace_lists_is_not_refused(obj, policy):
    assert scheduling.refusal(obj, policy, (names.POD_ANNOTATIONS_ANNOTATION,)) is None


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"FTO_SCHEDULING_POLICY": ""}, None),
    ({"FTO_SCHEDULING_POLICY": json.dumps(POLICY)}, POLICY),
])
def test_the_policy_comes_from_the_environment(env, expected):
    assert OperatorSettings.from_env(env).scheduling_policy == expected
