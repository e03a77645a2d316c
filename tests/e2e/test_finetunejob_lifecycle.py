"""FineTuneJob lifecycles on kwok GPU nodes: multi-node, retries, permanent failures, suspend, cancel,
deadline, TTL, quotas and preflight, driven by the real operator against the real apiserver."""
from __future__ import annotations

import json

import time

import pytest

from fakejobs import GROUP, KWOK_SETTINGS, VERSION, finetunejob, get, phase_is, setup_namespace, status, upload_result
from helpers import wait_for
from operator_process import OperatorProcess


@pytest.fixture
def bucket(core, s3, namespace):
    return setup_namespace(core, s3, namespace)


@pytest.fixture
def operator(cluster, crds, namespace, tmp_path):
    proc = OperatorProcess(cluster, [namespace], tmp_path / "operator.log", env=KWOK_SETTINGS).start()
    yield proc
    proc.stop()


def create(crds, namespace, body):
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", body)


def reasons(core, namespace, name):
    return [e.reason for e in core.list_namespaced_event(namespace).items if e.involved_object.name == name]


def test_multi_node_job_runs_as_an_indexed_job_with_torchrun_and_succeeds_with_a_verified_adapter(
        cluster, crds, core, batch, s3, namespace, bucket, operator):
    result = upload_result(s3, bucket, "multi")
    create(crds, namespace, finetunejob(cluster, bucket, "multi", result=result, nodes=2, gpus=4, duration="3s"))
    job = wait_for(lambda: batch.read_namespaced_job("multi-train-1", namespace), timeout=60, what="trainer Job")
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2 and job.spec.parallelism == 2
    pod_spec = job.spec.template.spec
    assert pod_spec.subdomain == "multi-train-1"
    argv = [*pod_spec.containers[0].command, *pod_spec.containers[0].args]
    assert argv[0] == "torchrun" and "--nnodes=2" in argv and "--nproc-per-node=4" in argv
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in argv and "--master-addr=multi-train-1-0.multi-train-1" in argv
    assert pod_spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"
    service = core.read_namespaced_service("multi-train-1", namespace)
    assert service.spec.cluster_ip == "None" and service.spec.publish_not_ready_addresses
    final = wait_for(lambda: phase_is(crds, namespace, "multi", "Succeeded", "Failed"), timeout=90, what="finished")
    assert final["phase"] == "Succeeded", final
    assert final["result"]["adapterDigest"] == result["adapterDigest"] and final["result"]["tokens"] == 1000
    assert final["lineage"] == {"datasetUri": f"s3://{bucket}/data/train.jsonl", "datasetEtag": "etag-1",
                                "baseModelDigest": "sha256:" + "ab" * 32, "configHash": "sha256:" + "cd" * 32,
                                "trainerImage": "finetune-operator/trainer:test"}
    assert final["gpuSeconds"] > 0, "2 pods x 4 GPUs for a few seconds"
    assert {"TrainerLaunched", "Trained"} <= set(reasons(core, namespace, "multi"))


def test_a_tampered_adapter_fails_verification(cluster, crds, s3, namespace, bucket, operator):
    result = upload_result(s3, bucket, "tampered", tamper=True)
    create(crds, namespace, finetunejob(cluster, bucket, "tampered", result=result))
    final = wait_for(lambda: phase_is(crds, namespace, "tampered", "Succeeded", "Failed"), timeout=90,
                     what="finished")
    assert final["phase"] == "Failed" and final["reason"] == "DigestMismatch", final
    assert "adapter_model.safetensors" in final["message"]


def test_retryable_failure_relaunches_with_backoff_and_resumes(cluster, crds, core, batch, s3, namespace, bucket,
                                                                operator):
    result = upload_result(s3, bucket, "flaky")
    create(crds, namespace, finetunejob(cluster, bucket, "flaky", result=result, retryLimit=2,
                                        trainer={"fto.dev/fake-exit-code": "143",
                                                                 "fto.dev/fake-termination-message": ""}))
    failed = wait_for(lambda: (status(crds, namespace, "flaky").get("lastFailure") or None), timeout=90,
                      what="first attempt failed")
    assert failed["retryable"] and failed["reason"] == "PodFailed"
    s = status(crds, namespace, "flaky")
    assert s["attempts"] == 2 and s["phase"] == "Queued" and s["reason"] == "Retrying"
    # The next attempt succeeds: the (metadata-only) annotation change reaches attempt 2's pods.
    crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "flaky",
                                        {"metadata": {"annotations": {
                                            "finetune.fto.dev/trainer-pod-annotations": "{}"}}})
    second = wait_for(lambda: batch.read_namespaced_job("flaky-train-2", namespace), timeout=60, what="attempt 2")
    first = batch.read_namespaced_job("flaky-train-1", namespace)
    gap = (second.metadata.creation_timestamp - first.status.conditions[-1].last_transition_time).total_seconds()
    assert gap >= 4, f"attempt 2 started {gap:.1f}s after attempt 1 failed; the backoff is 5s"
    env = {e.name: e.value for e in second.spec.template.spec.containers[0].env}
    assert env["FTO_TRAINER_ATTEMPT"] == "2", "the trainer knows it is a relaunch and resumes from a checkpoint"
    final = wait_for(lambda: phase_is(crds, namespace, "flaky", "Succeeded", "Failed"), timeout=90, what="finished")
    assert final["phase"] == "Succeeded" and final["attempts"] == 2
    assert {"Retrying", "TrainerRelaunched"} <= set(reasons(core, namespace, "flaky"))


def test_permanent_failure_does_not_retry(cluster, crds, batch, namespace, bucket, operator):
    diverged = {"reason": "Diverged", "exitCode": 14, "retryable": False, "message": "loss became NaN at step 7"}
    create(crds, namespace, finetunejob(cluster, bucket, "nan", result=diverged, retryLimit=3,
                                        trainer={"fto.dev/fake-exit-code": "14"}))
    final = wait_for(lambda: phase_is(crds, namespace, "nan", "Succeeded", "Failed"), timeout=90, what="finished")
    assert final["phase"] == "Failed" and final["reason"] == "Diverged" and "NaN" in final["message"]
    assert not final["lastFailure"]["retryable"] and final["attempts"] == 1
    assert [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == ["nan-train-1"]


OOM = {"reason": "OutOfMemory", "exitCode": 13, "retryable": True, "message": "out of GPU memory at step 3"}


def test_out_of_memory_fails_unless_the_policy_splits_micro_batches(cluster, crds, core, batch, s3, namespace,
                                                                   bucket, operator):
    oom_trainer = {"fto.dev/fake-exit-code": "13", "fto.dev/fake-termination-message": json.dumps(OOM)}
    create(crds, namespace, finetunejob(cluster, bucket, "oom-fail", retryLimit=3, trainer=oom_trainer))
    create(crds, namespace, finetunejob(cluster, bucket, "oom-split", result=upload_result(s3, bucket, "oom-split"),
                                        retryLimit=3, trainer=oom_trainer,
                                        onOutOfMemory={"action": "SplitMicroBatch", "maxSplit": 4}))
    failed = wait_for(lambda: phase_is(crds, namespace, "oom-fail", "Failed"), timeout=90, what="oom-fail Failed")
    assert failed["reason"] == "OutOfMemory" and "onOutOfMemory.action is Fail" in failed["message"]
    assert failed["attempts"] == 1, "the same batch would run out of memory again: no relaunch"
    s = wait_for(lambda: status(crds, namespace, "oom-split").get("microBatchSplit") and
                 status(crds, namespace, "oom-split"), timeout=90, what="split after OOM")
    assert s["microBatchSplit"] == 2 and s["attempts"] == 2
    crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "oom-split",
                                        {"metadata": {"annotations": {
                                            "finetune.fto.dev/trainer-pod-annotations": "{}"}}})
    second = wait_for(lambda: batch.read_namespaced_job("oom-split-train-2", namespace), timeout=60, what="attempt 2")
    env = {e.name: e.value for e in second.spec.template.spec.containers[0].env}
    assert env["FTO_MICRO_BATCH_SPLIT"] == "2" and env["FTO_TRAINER_ATTEMPT"] == "2"
    final = wait_for(lambda: phase_is(crds, namespace, "oom-split", "Succeeded", "Failed"), timeout=90,
                     what="finished")
    assert final["phase"] == "Succeeded"
    assert "MicroBatchSplit" in reasons(core, namespace, "oom-split")


def test_suspend_stops_the_pods_and_resume_continues(cluster, crds, core, batch, s3, namespace, bucket, operator):
    create(crds, namespace, finetunejob(cluster, bucket, "pause", result=upload_result(s3, bucket, "pause"),
                                        duration="600s"))
    wait_for(lambda: phase_is(crds, namespace, "pause", "Running"), timeout=60, what="Running")
    crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "pause",
                                        {"spec": {"lifecycle": {"suspend": True}}})
    s = wait_for(lambda: phase_is(crds, namespace, "pause", "Suspended"), timeout=30, what="Suspended")
    assert {c["type"]: c["status"] for c in s["conditions"]}["Suspended"] == "True"
    assert batch.read_namespaced_job("pause-train-1", namespace).spec.suspend
    wait_for(lambda: not core.list_namespaced_pod(
        namespace, label_selector="batch.kubernetes.io/job-name=pause-train-1").items, timeout=30, what="pods gone")
    crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "pause",
                                        {"spec": {"lifecycle": {"suspend": False}}})
    wait_for(lambda: phase_is(crds, namespace, "pause", "Running"), timeout=60, what="Running again")
    assert not batch.read_namespaced_job("pause-train-1", namespace).spec.suspend
    assert status(crds, namespace, "pause")["attempts"] == 1, "resuming is not a retry"
    assert {"Suspended", "Resumed"} <= set(reasons(core, namespace, "pause"))


def test_cancel_stops_for_good_and_keeps_the_record(cluster, crds, batch, s3, namespace, bucket, operator):
    create(crds, namespace, finetunejob(cluster, bucket, "stop", duration="600s"))
    wait_for(lambda: phase_is(crds, namespace, "stop", "Running"), timeout=60, what="Running")
    crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "stop",
                                        {"spec": {"lifecycle": {"cancel": True}}})
    s = wait_for(lambda: phase_is(crds, namespace, "stop", "Cancelled"), timeout=30, what="Cancelled")
    assert s["completionTime"] and s["reason"] == "Cancelled"
    wait_for(lambda: not batch.list_namespaced_job(namespace).items, timeout=30, what="Job deleted")


def test_active_deadline_fails_the_job(cluster, crds, namespace, bucket, operator):
    create(crds, namespace, finetunejob(cluster, bucket, "slow", duration="600s", activeDeadlineSeconds=4))
    final = wait_for(lambda: phase_is(crds, namespace, "slow", "Failed"), timeout=60, what="Failed")
    assert final["reason"] == "DeadlineExceeded" and "activeDeadlineSeconds" in final["message"]


def test_ttl_after_finished_deletes_children_and_keeps_the_job(cluster, crds, core, batch, s3, namespace, bucket,
                                                               operator):
    create(crds, namespace, finetunejob(cluster, bucket, "short", result=upload_result(s3, bucket, "short"),
                                        ttlSecondsAfterFinished=2))
    wait_for(lambda: phase_is(crds, namespace, "short", "Succeeded"), timeout=60, what="Succeeded")
    s = wait_for(lambda: status(crds, namespace, "short").get("childrenDeletedAt") and
                 status(crds, namespace, "short"), timeout=30, what="TTL clean-up")
    assert s["phase"] == "Succeeded" and s["result"]["adapterUri"]
    wait_for(lambda: not batch.list_namespaced_job(namespace).items, timeout=30, what="Jobs deleted")
    wait_for(lambda: not [p for p in core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp],
             timeout=30, what="pods deleted")
    assert not core.list_namespaced_config_map(namespace, label_selector="finetune.fto.dev/job=short").items


def test_preflight_refuses_what_the_cluster_cannot_run_before_any_pod(cluster, crds, core, namespace, bucket,
                                                                      operator):
    create(crds, namespace, finetunejob(cluster, bucket, "huge", gpus=16))
    body = finetunejob(cluster, bucket, "nokeys")
    body["spec"]["credentials"]["secretRef"]["name"] = "does-not-exist"
    create(crds, namespace, body)
    huge = wait_for(lambda: phase_is(crds, namespace, "huge", "Failed"), timeout=30, what="huge Failed")
    assert huge["reason"] == "NoFittingNode" and "largest GPU node offers 8" in huge["message"]
    nokeys = wait_for(lambda: phase_is(crds, namespace, "nokeys", "Failed"), timeout=30, what="nokeys Failed")
    assert nokeys["reason"] == "CredentialsMissing" and "does-not-exist" in nokeys["message"]
    assert core.list_namespaced_pod(namespace).items == []


def test_namespace_cap_runs_jobs_one_at_a_time_in_creation_order(cluster, crds, batch, s3, namespace, bucket,
                                                                 tmp_path):
    proc = OperatorProcess(cluster, [namespace], tmp_path / "capped.log",
                           env={**KWOK_SETTINGS, "FTO_MAX_RUNNING_JOBS_PER_NAMESPACE": "1"}).start()
    try:
        # Each job is created once the one before it waits in the queue, so the queue order is
        # the creation order (a job still validating holds no place in the line).
        for name, before in (("first", None), ("second", "first"), ("third", "second")):
            if before:
                wait_for(lambda: status(crds, namespace, before).get("phase") in ("Queued", "Running", "Succeeded"),
                         timeout=60, what=f"{before} queued")
                time.sleep(1.1)  # creationTimestamp has one-second resolution
            create(crds, namespace, finetunejob(cluster, bucket, name, result=upload_result(s3, bucket, name),
                                                duration="4s"))
        most = 0
        def all_done():
            nonlocal most
            running = [j for j in batch.list_namespaced_job(namespace).items
                       if not j.status.succeeded and not j.status.failed and not j.spec.suspend]
            most = max(most, len(running))
            return all(phase_is(crds, namespace, n, "Succeeded") for n in ("first", "second", "third"))
        wait_for(all_done, timeout=120, interval=0.2, what="all three Succeeded")
        assert most == 1, f"{most} trainer Jobs ran at once under a cap of 1"
        starts = {n: status(crds, namespace, n)["startTime"] for n in ("first", "second", "third")}
        assert starts["first"] <= starts["second"] <= starts["third"], starts
        assert 'fto_operator_jobs{namespace="%s",phase="Succeeded"} 3.0' % namespace in proc.metrics()
    finally:
        proc.stop()


def test_jobs_carry_no_finalizer_and_delete_without_an_operator(cluster, crds, namespace, bucket, operator):
    create(crds, namespace, finetunejob(cluster, bucket, "gone", duration="600s"))
    wait_for(lambda: phase_is(crds, namespace, "gone", "Running"), timeout=60, what="Running")
    assert not get(crds, namespace, "gone")["metadata"].get("finalizers")
    operator.stop()
    crds.delete_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "gone")
    from kubernetes.client.exceptions import ApiException

    def deleted():
        try:
            get(crds, namespace, "gone")
        except ApiException as err:
            return err.status == 404
    wait_for(deleted, timeout=10, what="deleted with no operator running")


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents") or [])


def _gone(crds, namespace: str, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException
    try:
        get(crds, namespace, name)
    except ApiException as err:
        return err.status == 404
    return False


def test_cleanup_on_delete_stops_the_trainer_then_deletes_its_output(cluster, crds, core, s3, namespace, bucket,
                                                                     operator):
    create(crds, namespace, finetunejob(cluster, bucket, "wipe", duration="600s", cleanupOnDelete="All"))
    wait_for(lambda: phase_is(crds, namespace, "wipe", "Running"), timeout=60, what="Running")
    assert get(crds, namespace, "wipe")["metadata"]["finalizers"] == ["finetune.fto.dev/s3-cleanup"]
    for key in ("out/wipe/checkpoints/step-00000010/adapter_model.safetensors", "out/wipe/adapter/a.safetensors",
                "out/wipe-2/manifest.json"):  # a neighbour whose name starts the same must survive
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    crds.delete_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "wipe")
    wait_for(lambda: _gone(crds, namespace, "wipe"), timeout=60, what="the job deleted after its clean-up")
    assert _keys(s3, bucket, "out/wipe/") == []
    assert _keys(s3, bucket, "out/wipe-2/") == ["out/wipe-2/manifest.json"]
    deleted = [e for e in core.list_namespaced_event(namespace).items
               if e.involved_object.name == "wipe" and e.reason == "OutputDeleted"]
    assert deleted and f"deleted 2 object(s) under s3://{bucket}/out/wipe/" in deleted[0].message
    wait_for(lambda: not [p for p in core.list_namespaced_pod(namespace).items if p.status.phase == "Running"],
             timeout=30, what="the trainer pod stopped")


def test_cleanup_keeps_the_adapter_a_model_version_was_registered_from(cluster, crds, s3, namespace, bucket,
                                                                       operator):
    create(crds, namespace, finetunejob(cluster, bucket, "kept", result=upload_result(s3, bucket, "kept"),
                                        cleanupOnDelete="All"))
    wait_for(lambda: phase_is(crds, namespace, "kept", "Succeeded"), timeout=60, what="Succeeded")
    s3.put_object(Bucket=bucket, Key="out/kept/checkpoints/step-00000010/state.json", Body=b"{}")
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": "bot-kept"},
        "spec": {"model": "bot", "version": "kept", "adapter": {"fromJob": {"name": "kept"}}}})

    crds.delete_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "kept")
    wait_for(lambda: _gone(crds, namespace, "kept"), timeout=60, what="the job deleted after its clean-up")
    assert _keys(s3, bucket, "out/kept/") == ["out/kept/adapter/adapter_model.safetensors", "out/kept/manifest.json"]
