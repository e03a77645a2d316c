"""Issue 13, finding 2: a tenant takes a child's fixed name before the operator does.

As a tenant (kubectl impersonating a member of team-a, bound to `edit`), with the chart's RBAC
and admission policies in force and the operator under the chart's ServiceAccount: a planted
`<job>-config` (another team's data, an S3 endpoint the allow-list refuses) or `<job>-validate`
pod is never used, changed or deleted; the job reports ChildNameConflict (condition and Warning
event) and waits; once the object is gone it continues with its own, immutable config.
"""
from __future__ import annotations

import hashlib
import json

import pytest
from kubernetes import client, config

from helpers import wait_for
from tenancy import GROUP, VERSION, apply, as_user, install_tenancy, job, operator_under_sa, stop_operator

REFUSED_ENDPOINT = "http://127.0.0.1:1"  # loopback, not on the allow-list: refused at admission, never dialled


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3):
    yield from install_tenancy(cluster, core, s3)


@pytest.fixture
def operator_as_sa(cluster, core, tenancy, tmp_path, base_model_uri):
    kubeconfig, log, proc = operator_under_sa(cluster, core, tenancy, tmp_path)
    yield log, proc
    stop_operator(cluster, proc, [tenancy.team_a, tenancy.system])


def tenant(tenancy):
    return f"mallory-{tenancy.tag}", [f"team-a-{tenancy.tag}"]


def admin_apis(cluster):
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return client.CustomObjectsApi(api), client.CoreV1Api(api)


def planted_config(cluster, tenancy, name: str) -> dict:
    """The config a tenant wants the trainer to read: team-b's data, a refused endpoint."""
    doc = {"job": {"namespace": tenancy.team_a, "name": name, "uid": "planted"},
           "spec": job(cluster, name, "team-b-private", credentials__endpoint=REFUSED_ENDPOINT)["spec"],
           "runtime": {"metricsPort": 9090, "workDir": "/tmp/planted"}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"},
            "data": {"config.json": json.dumps(doc)}}


def planted_pod(name: str) -> dict:
    """A pod under the validate pod's name that can never be scheduled (it only holds the name)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-validate"},
            "spec": {"nodeSelector": {"fto.dev/nowhere": "true"}, "automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


def conflict(custom, ns: str, name: str):
    status = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name).get("status") or {}
    assert status.get("phase") not in ("Failed", "Succeeded"), status
    return next((c for c in status.get("conditions") or [] if c["reason"] == "ChildNameConflict"), None)


def warnings(core, ns: str, name: str) -> list:
    events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name},reason=ChildNameConflict")
    return [e for e in events.items if e.type == "Warning"]


def pods_mounting(core, ns: str, config_map: str) -> list:
    return [p.metadata.name for p in core.list_namespaced_pod(ns).items
            if any(v.config_map and v.config_map.name == config_map for v in p.spec.volumes or [])]


def test_a_planted_config_map_is_never_used_and_the_job_continues_once_it_is_gone(
        cluster, tenancy, operator_as_sa):
    log, proc = operator_as_sa
    custom, core = admin_apis(cluster)
    ns, (user, groups), name = tenancy.team_a, tenant(tenancy), "squat-config"
    # The endpoint the planted config names is refused for a FineTuneJob at admission.
    refused = apply(cluster, ns, job(cluster, "direct", tenancy.bucket, credentials__endpoint=REFUSED_ENDPOINT),
                    user, groups)
    assert refused.returncode != 0 and "not on the allow-list" in refused.stderr
    made = apply(cluster, ns, planted_config(cluster, tenancy, name), user, groups)
    assert made.returncode == 0, made.stderr
    planted = core.read_namespaced_config_map(f"{name}-config", ns)
    created = apply(cluster, ns, job(cluster, name, tenancy.bucket), user, groups)
    assert created.returncode == 0, created.stderr

    try:
        found = wait_for(lambda: proc.poll() is None and conflict(custom, ns, name), timeout=60, interval=0.5,
                         what="ChildNameConflict on the job")
    except AssertionError as err:
        raise AssertionError(f"{err}\nvalidate pods: {pods_mounting(core, ns, f'{name}-config')}\n"
                             f"operator log:\n{log.read_text()[-3000:]}") from None
    assert found["type"] == "Validated" and f"ConfigMap {name}-config" in found["message"]
    wait_for(lambda: warnings(core, ns, name), timeout=30, what="a Warning event naming the conflict")
    assert pods_mounting(core, ns, f"{name}-config") == [], "no pod may mount the planted config"
    still = core.read_namespaced_config_map(f"{name}-config", ns)
    assert still.metadata.uid == planted.metadata.uid and still.data == planted.data, "used or changed"
    assert not still.metadata.owner_references

    gone = as_user(cluster, user, groups, "delete", "configmap", f"{name}-config", "-n", ns)
    assert gone.returncode == 0, gone.stderr
    ftj_uid = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name)["metadata"]["uid"]

    def own_validate_pod():
        assert proc.poll() is None, f"the operator exited ({proc.returncode})"
        pods = pods_mounting(core, ns, f"{name}-config")
        return core.read_namespaced_pod(pods[0], ns) if pods else None
    pod = wait_for(own_validate_pod, timeout=60, interval=0.5, what="the job's own validate pod")
    cm = core.read_namespaced_config_map(f"{name}-config", ns)
    assert cm.immutable is True and [r.uid for r in cm.metadata.owner_references] == [ftj_uid]
    assert f"s3://{tenancy.bucket}/data/train.jsonl" in cm.data["config.json"]
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["FTO_TRAINER_CONFIG_SHA256"] == "sha256:" + hashlib.sha256(cm.data["config.json"].encode()).hexdigest()
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name)


def test_a_planted_validate_pod_is_never_used_and_survives_the_jobs_cancel(cluster, tenancy, operator_as_sa):
    log, proc = operator_as_sa
    custom, core = admin_apis(cluster)
    ns, (user, groups), name = tenancy.team_a, tenant(tenancy), "squat-validate"
    made = apply(cluster, ns, planted_pod(name), user, groups)
    assert made.returncode == 0, made.stderr
    planted = core.read_namespaced_pod(f"{name}-validate", ns)
    created = apply(cluster, ns, job(cluster, name, tenancy.bucket), user, groups)
    assert created.returncode == 0, created.stderr
    try:
        found = wait_for(lambda: proc.poll() is None and conflict(custom, ns, name), timeout=60, interval=0.5,
                         what="ChildNameConflict on the job")
    except AssertionError as err:
        raise AssertionError(f"{err}\noperator log:\n{log.read_text()[-3000:]}") from None
    assert f"Pod {name}-validate" in found["message"]
    wait_for(lambda: warnings(core, ns, name), timeout=30, what="a Warning event naming the conflict")

    cancel = as_user(cluster, user, groups, "patch", "finetunejob", name, "-n", ns, "--type=merge",
                     "-p", '{"spec":{"lifecycle":{"cancel":true}}}')
    assert cancel.returncode == 0, cancel.stderr
    wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name)
                      .get("status") or {}).get("phase") == "Cancelled", timeout=60, what="the job cancelled")
    still = core.read_namespaced_pod(f"{name}-validate", ns)
    assert still.metadata.uid == planted.metadata.uid and still.metadata.deletion_timestamp is None, \
        "cancel deleted a pod that is not the job's"
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name)
    core.delete_namespaced_pod(f"{name}-validate", ns, grace_period_seconds=0)


def test_a_tenant_cannot_plant_a_child_carrying_a_copy_of_the_jobs_owner_reference(cluster, tenancy):
    """The uid is readable by the tenant; the chart's child-ownership policy keeps them from using it."""
    custom, core = admin_apis(cluster)
    ns, (user, groups), name = tenancy.team_a, tenant(tenancy), "forged-owner"
    created = apply(cluster, ns, job(cluster, name, tenancy.bucket), user, groups)
    assert created.returncode == 0, created.stderr
    uid = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name)["metadata"]["uid"]
    forged = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "name": name, "uid": uid,
              "controller": True, "blockOwnerDeletion": False}
    pod = planted_pod(name)
    pod["metadata"]["ownerReferences"] = [forged]
    refused = apply(cluster, ns, pod, user, groups)
    assert refused.returncode != 0
    assert "only the finetune-operator may make a Pod a FineTuneJob's child" in refused.stderr, refused.stderr
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"}, "data": {"a": "b"}}
    assert apply(cluster, ns, config_map, user, groups).returncode == 0  # without the reference: the tenant's own
    added = as_user(cluster, user, groups, "patch", "configmap", f"{name}-config", "-n", ns, "--type=merge",
                    "-p", json.dumps({"metadata": {"ownerReferences": [forged]}}))
    assert added.returncode != 0 and "only the finetune-operator may make a ConfigMap" in added.stderr, added.stderr
    assert not core.read_namespaced_config_map(f"{name}-config", ns).metadata.owner_references
