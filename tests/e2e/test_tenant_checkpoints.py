"""Issue 13, finding 4: whoever can write a job's output prefix chose which checkpoint a relaunch
resumed and what it held. Now a relaunch resumes only from the checkpoint whose digest the
operator recorded in status.checkpoints, and refuses it (CheckpointMismatch) if it changed.

The attack, as the tenant: a team member of team-a (kubectl as their identity) reads the job's
S3 credentials from their namespace's Secret, stops the running trainer (deletes its pod: a
retry follows) and, between the attempts, overwrites every checkpoint's weights in the output
prefix with their own. Before the fix attempt 2 resumed from the newest checkpoint it found
(the planted weights) and the job succeeded with them.
"""
from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client, config

from finetune_api import resume
from helpers import wait_for
from tenancy import GROUP, VERSION, apply, as_user, install_tenancy, job, operator_under_sa, stop_operator


# The process node has 2 CPUs for every session's pods: no inference example (nothing is served
# here), and small CPU requests so the validate and trainer pods fit beside other releases'.
CPU = "200m"


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3):
    yield from install_tenancy(cluster, core, s3, {"inferenceExample": {"enabled": False}})


@pytest.fixture
def operator_as_sa(cluster, core, tenancy, tmp_path, base_model_uri, monkeypatch):
    monkeypatch.setenv("FTO_VALIDATE_CPU", CPU)
    kubeconfig, log, proc = operator_under_sa(cluster, core, tenancy, tmp_path)
    yield kubeconfig, log, proc
    stop_operator(cluster, proc, [tenancy.team_a, tenancy.system])


def tenant_s3(cluster, tenancy, user, groups):
    """boto3 with the credentials the tenant reads from their own namespace's Secret."""
    import boto3
    got = as_user(cluster, user, groups, "get", "secret", "s3-credentials", "-n", tenancy.team_a, "-o", "json")
    assert got.returncode == 0, got.stderr
    data = {k: base64.b64decode(v).decode() for k, v in json.loads(got.stdout)["data"].items()}
    return boto3.client("s3", endpoint_url=cluster.s3_endpoint, aws_access_key_id=data["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=data["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


def plant_weights(s3, bucket: str, prefix: str) -> list:
    """Overwrites trainable.safetensors of every checkpoint under prefix with zeros of the same
    shapes (a valid file of the tenant's choosing); returns the keys replaced."""
    import torch
    from safetensors.torch import load, save
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            if o["Key"].endswith("/trainable.safetensors")]
    for key in keys:
        tensors = load(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        s3.put_object(Bucket=bucket, Key=key, Body=save({k: torch.zeros_like(v) for k, v in tensors.items()}))
    return keys


def test_a_checkpoint_the_tenant_overwrites_between_attempts_is_refused(cluster, tenancy, operator_as_sa):
    _, log, proc = operator_as_sa
    ns, user, groups = tenancy.team_a, f"a-{tenancy.tag}", [f"team-a-{tenancy.tag}"]
    admin = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    batch = client.BatchV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    body = job(cluster, "resume", tenancy.bucket, training__maxSteps=60, training__checkpointEverySteps=2,
               training__evalEverySteps=100, lifecycle__retryLimit=1, resources__cpu=CPU)
    created = apply(cluster, ns, body, user, groups)
    assert created.returncode == 0, created.stderr

    def status():
        assert proc.poll() is None, f"the operator exited ({proc.returncode})"
        return admin.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", "resume").get("status") or {}

    def checkpointed():
        s = status()
        assert s.get("phase") not in ("Failed", "Succeeded", "Cancelled"), s
        return s if s.get("checkpoints") else None
    try:
        recorded = wait_for(checkpointed, timeout=480, interval=1, what="a checkpoint in status")
        stopped = as_user(cluster, user, groups, "delete", "pod", "-n", ns, "--wait=false",
                          "-l", "batch.kubernetes.io/job-name=resume-train-1")
        assert stopped.returncode == 0, stopped.stderr
        retrying = wait_for(lambda: (lambda s: s if s.get("attempts") == 2 else None)(status()), timeout=120,
                            interval=0.5, what="attempt 1 failed, a retry queued")
        planted = plant_weights(tenant_s3(cluster, tenancy, user, groups), tenancy.bucket, "out/resume/checkpoints/")
        assert planted, "the tenant found checkpoints to overwrite"
        final = wait_for(lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed") else None)(status()),
                         timeout=420, interval=1, what="the job to finish")
    except AssertionError as err:
        last = admin.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", "resume").get("status")
        raise AssertionError(f"{err}\nstatus: {json.dumps(last)[-3000:]}\noperator log:\n{log.read_text()[-3000:]}") \
            from None

    # Before the fix: Succeeded, trained on from the planted weights.
    assert (final["phase"], final["reason"]) == ("Failed", "CheckpointMismatch"), final
    assert not final["lastFailure"]["retryable"]
    assert all(resume.is_digest(c.get("digest")) for c in recorded["checkpoints"]), recorded["checkpoints"]
    pointer = resume.pointer(retrying["checkpoints"])
    env = {e.name: e.value for e in batch.read_namespaced_job("resume-train-2", ns).spec.template.spec.containers[0].env}
    assert json.loads(env[resume.RESUME_ENV]) == pointer, "attempt 2 is told the checkpoint the operator recorded"
    assert pointer["uri"] in final["message"] and pointer["digest"] in final["message"], final["message"]
