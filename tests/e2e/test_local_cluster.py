"""The local cluster is real: nodes, scheduling, Jobs that run, S3, RBAC."""
from __future__ import annotations

import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster import nodes
from helpers import job_finished, job_manifest, only_pod, wait_for

PROCESS_NODE = {nodes.PROCESS_NODE_LABEL: "true"}
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_nodes_are_fake_gpu_nodes_and_the_process_node(core):
    listed = {n.metadata.name: n for n in core.list_node().items}
    gpu_nodes = [n for name, n in listed.items() if name.startswith("fto-gpu-")]
    assert len(gpu_nodes) == 4
    for node in gpu_nodes:
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in node.spec.taints)
    assert nodes.PROCESS_NODE_NAME in listed
    for node in listed.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", f"{node.metadata.name} is not Ready"


def test_job_on_the_process_node_really_runs_and_completes(core, batch, namespace):
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="greeting"),
                                                             string_data={"word": "hello"}))
    script = 'echo "$WORD from $(hostname) at $POD_IP" > /dev/termination-log; ls /data; exit 0'
    job = job_manifest("echo", ["sh", "-c", script], node_selector=PROCESS_NODE, env=[
        {"name": "WORD", "valueFrom": {"secretKeyRef": {"name": "greeting", "key": "word"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        extra_container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]})
    job["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    batch.create_namespaced_job(namespace, job)

    assert wait_for(lambda: job_finished(batch, "echo", namespace), what="Job echo to finish") == "Complete"
    pod = only_pod(core, namespace, "job-name=echo")
    assert pod.spec.node_name == nodes.PROCESS_NODE_NAME
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert terminated.message.strip() == f"hello from {pod.metadata.name} at {pod.status.pod_ip}"
    assert pod.status.pod_ip.startswith("127.")


def test_failing_job_on_the_process_node_reports_its_exit_code_and_logs(core, batch, namespace):
    job = job_manifest("fail", ["sh", "-c", "echo 'disk on fire' >&2; exit 3"], node_selector=PROCESS_NODE,
                       extra_container={"terminationMessagePolicy": "FallbackToLogsOnError"})
    batch.create_namespaced_job(namespace, job)

    assert wait_for(lambda: job_finished(batch, "fail", namespace), what="Job fail to finish") == "Failed"
    terminated = only_pod(core, namespace, "job-name=fail").status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert "disk on fire" in terminated.message


def test_gpu_job_lands_on_a_fake_gpu_node_and_completes_via_kwok(core, batch, namespace):
    job = job_manifest("train", ["train"], image="finetune-operator/trainer", tolerations=GPU_TOLERATION,
                       resources={"limits": {"nvidia.com/gpu": "8"}}, annotations={"fto.dev/fake-duration": "2s"})
    batch.create_namespaced_job(namespace, job)

    assert wait_for(lambda: job_finished(batch, "train", namespace), what="GPU Job to finish") == "Complete"
    pod = only_pod(core, namespace, "job-name=train")
    assert pod.spec.node_name.startswith("fto-gpu-")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_kwok_fails_a_gpu_pod_when_asked_so_retries_can_be_tested(core, batch, namespace):
    job = job_manifest("flaky", ["train"], image="finetune-operator/trainer", tolerations=GPU_TOLERATION,
                       resources={"limits": {"nvidia.com/gpu": "1"}}, annotations={"fto.dev/fake-exit-code": "137"})
    batch.create_namespaced_job(namespace, job)

    assert wait_for(lambda: job_finished(batch, "flaky", namespace), what="flaky Job to fail") == "Failed"
    pod = only_pod(core, namespace, "job-name=flaky")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 137


def test_gpu_pod_without_toleration_is_not_scheduled(core, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greedy"},
           "spec": {"containers": [{"name": "main", "image": "finetune-operator/trainer",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    core.create_namespaced_pod(namespace, pod)

    def unschedulable():
        p = core.read_namespaced_pod("greedy", namespace)
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in p.status.conditions or [])
    wait_for(unschedulable, what="the scheduler to refuse the pod")
    assert core.read_namespaced_pod("greedy", namespace).spec.node_name is None


def test_s3_put_and_get_through_boto3(s3):
    bucket = f"t-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="datasets/train.jsonl", Body=b'{"prompt": "hi", "completion": "hello"}\n')
    body = s3.get_object(Bucket=bucket, Key="datasets/train.jsonl")["Body"].read()
    assert body == b'{"prompt": "hi", "completion": "hello"}\n'
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["datasets/train.jsonl"]


def test_rbac_restricted_user_is_refused_what_it_may_not_do(api, core, namespace, user_api):
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "alice-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})
    alice = client.CoreV1Api(user_api("alice", ("team-a",)))

    wait_for(lambda: alice.list_namespaced_pod(namespace) is not None, what="alice's grant to apply")
    for refused in (lambda: alice.list_namespaced_secret(namespace),
                    lambda: alice.list_namespaced_pod("default"),
                    lambda: alice.create_namespaced_pod(namespace, {
                        "metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})):
        with pytest.raises(ApiException) as err:
            refused()
        assert err.value.status == 403
