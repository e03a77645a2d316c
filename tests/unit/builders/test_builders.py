"""Child manifests from a FineTuneJob: deterministic, owned, least-privileged, shaped by the spec."""
from __future__ import annotations

import copy
import json

import pytest

from finetune_operator.builders import names, trainer_config, trainer_job, validate_pod
from finetune_operator.builders.settings import OperatorSettings

SETTINGS = OperatorSettings()
DIGEST = "sha256:" + "0" * 64
FTJ = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "FineTuneJob",
       "metadata": {"name": "support-bot", "namespace": "team-a", "uid": "uid-1"},
       "spec": {"baseModel": {"name": "smollm2", "uri": "s3://m/smollm2/"},
                "dataset": {"uri": "s3://d/train.jsonl", "format": "promptCompletion"},
                "credentials": {"secretRef": {"name": "s3", "accessKeyIdKey": "id", "secretAccessKeyKey": "key"},
                                "endpoint": "http://127.0.0.1:19000"},
                "method": {"type": "lora"}, "training": {}, "lifecycle": {"retryLimit": 3},
                "resources": {"gpusPerNode": 1, "nodes": 1}, "output": {"uri": "s3://o/bot/"}}}


def ftj(**resources):
    obj = copy.deepcopy(FTJ)
    obj["spec"]["resources"].update(resources)
    return obj


def container(manifest):
    spec = manifest["spec"]["template"]["spec"] if manifest["kind"] == "Job" else manifest["spec"]
    return spec["containers"][0]


def test_child_names_are_deterministic_and_fit_63_characters():
    assert names.child_name("support-bot", "train-1") == "support-bot-train-1"
    long = "x" * 80
    a, b = names.child_name(long, "train-12"), names.child_name(long, "train-12")
    assert a == b and len(a) <= 63 and a.endswith("-train-12")
    assert names.child_name(long + "y", "train-12") != a


def test_every_child_is_owned_by_the_job_and_labelled():
    for child in (trainer_config.config_map(FTJ, SETTINGS), validate_pod.validate_pod(FTJ, SETTINGS, config_digest=DIGEST),
                  trainer_job.trainer_job(FTJ, 1, SETTINGS, config_digest=DIGEST), trainer_job.headless_service(FTJ, 1, SETTINGS)):
        ref = child["metadata"]["ownerReferences"][0]
        assert ref["uid"] == "uid-1" and ref["controller"] is True
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "finetune-operator"
        assert child["metadata"]["namespace"] == "team-a"


def test_config_map_carries_the_spec_and_identity_the_trainer_reads():
    from finetune_trainer import config
    cm = trainer_config.config_map(FTJ, SETTINGS)
    cfg = config.from_dict(json.loads(cm["data"]["config.json"]))
    assert cfg.job == config.JobIdentity("team-a", "support-bot", "uid-1", 1)  # the attempt: the pod's env
    assert cfg.dataset["uri"] == "s3://d/train.jsonl"


def test_validate_pod_asks_for_no_gpu_and_only_validates():
    pod = validate_pod.validate_pod(FTJ, SETTINGS, config_digest=DIGEST)
    c = container(pod)
    assert c["args"] == ["train", "--validate-only"]
    assert "nvidia.com/gpu" not in json.dumps(c["resources"])
    assert pod["metadata"]["name"] == "support-bot-validate"


def test_trainer_pods_are_locked_down():
    job = trainer_job.trainer_job(FTJ, 1, SETTINGS, config_digest=DIGEST)
    spec = job["spec"]["template"]["spec"]
    c = container(job)
    assert spec["automountServiceAccountToken"] is False and spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert spec["terminationGracePeriodSeconds"] >= 60, "time to checkpoint after SIGTERM"
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "id"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "key"}
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"], "keys never inline"


def test_single_gpu_job_runs_the_trainer_directly_with_one_gpu():
    job = trainer_job.trainer_job(FTJ, 1, SETTINGS, config_digest=DIGEST)
    c = container(job)
    assert c["command"] == ["finetune-trainer"] and c["args"][:1] == ["train"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert job["spec"]["backoffLimit"] == 0 and "completionMode" not in job["spec"]
    assert job["metadata"]["name"] == "support-bot-train-1"


def test_multi_gpu_single_node_uses_torchrun_standalone():
    c = container(trainer_job.trainer_job(ftj(gpusPerNode=4), 1, SETTINGS, config_digest=DIGEST))
    assert c["command"] == ["torchrun"] and "--nproc-per-node=4" in c["args"] and "--standalone" in c["args"]


def test_multi_node_is_an_indexed_job_with_rendezvous_on_pod_zero():
    job = trainer_job.trainer_job(ftj(gpusPerNode=8, nodes=2), 3, SETTINGS, config_digest=DIGEST)
    c = container(job)
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    assert job["spec"]["template"]["spec"]["subdomain"] == "support-bot-train-3"
    assert "--nnodes=2" in c["args"] and "--node-rank=$(JOB_COMPLETION_INDEX)" in c["args"]
    assert "--master-addr=support-bot-train-3-0.support-bot-train-3" in c["args"]
    svc = trainer_job.headless_service(ftj(gpusPerNode=8, nodes=2), 3, SETTINGS)
    assert svc["spec"]["clusterIP"] == "None" and svc["metadata"]["name"] == "support-bot-train-3"
    assert svc["spec"]["selector"][trainer_job.ATTEMPT_LABEL] == "3"


@pytest.mark.parametrize("resources, check", [
    ({"gpuProduct": "NVIDIA-H100-80GB-HBM3", "nodeSelector": {"pool": "a"}},
     lambda s: s["nodeSelector"] == {"pool": "a", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
    ({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
     lambda s: s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]),
    ({"priorityClassName": "batch-low"}, lambda s: s["priorityClassName"] == "batch-low"),
])
def test_scheduling_fields_pass_through(resources, check):
    assert check(trainer_job.trainer_job(ftj(**resources), 1, SETTINGS, config_digest=DIGEST)["spec"]["template"]["spec"])


def test_kueue_queue_creates_the_job_suspended_with_the_queue_label():
    job = trainer_job.trainer_job(ftj(queueName="team-nlp"), 1, SETTINGS, config_digest=DIGEST)
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-nlp"


def test_cpu_job_requests_no_gpu_and_gets_no_shared_memory_volume():
    job = trainer_job.trainer_job(ftj(gpusPerNode=0), 1, SETTINGS, config_digest=DIGEST)
    assert "nvidia.com/gpu" not in json.dumps(job) and "dshm" not in json.dumps(job)


def test_pods_carry_the_full_job_name_and_the_jobs_pod_annotations():
    obj = ftj()
    obj["metadata"]["annotations"] = {names.POD_ANNOTATIONS_ANNOTATION: '{"sidecar.istio.io/inject": "false"}'}
    for manifest in (trainer_job.trainer_job(obj, 1, SETTINGS, config_digest=DIGEST), validate_pod.validate_pod(obj, SETTINGS, config_digest=DIGEST)):
        meta = manifest["spec"]["template"]["metadata"] if manifest["kind"] == "Job" else manifest["metadata"]
        assert meta["annotations"][names.FINETUNEJOB_ANNOTATION] == "support-bot"
        assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    obj["metadata"]["annotations"][names.POD_ANNOTATIONS_ANNOTATION] = "not json"
    assert "sidecar.istio.io/inject" not in trainer_job.trainer_job(obj, 1, SETTINGS, config_digest=DIGEST)["spec"]["template"]["metadata"]["annotations"]


def test_validate_pods_go_where_the_platform_team_says():
    settings = OperatorSettings(validate_node_selector={"pool": "cpu"},
                                validate_tolerations=[{"key": "pool", "operator": "Exists"}])
    spec = validate_pod.validate_pod(ftj(), settings, config_digest=DIGEST)["spec"]
    assert spec["nodeSelector"] == {"pool": "cpu"} and spec["tolerations"][0]["key"] == "pool"


def test_each_attempt_gets_only_the_deadline_left():
    obj = ftj()
    obj["spec"]["lifecycle"]["activeDeadlineSeconds"] = 3600
    assert trainer_job.trainer_job(obj, 1, SETTINGS, config_digest=DIGEST)["spec"]["activeDeadlineSeconds"] == 3600
    assert trainer_job.trainer_job(obj, 2, SETTINGS, deadline_left=1200, config_digest=DIGEST)["spec"]["activeDeadlineSeconds"] == 1200


def test_an_attempt_after_an_out_of_memory_failure_tells_the_trainer_to_split_micro_batches():
    obj = ftj()
    env = lambda job: {e["name"]: e.get("value") for e in container(job)["env"]}  # noqa: E731
    assert "FTO_MICRO_BATCH_SPLIT" not in env(trainer_job.trainer_job(obj, 1, SETTINGS, config_digest=DIGEST))
    obj["status"] = {"microBatchSplit": 4}
    assert env(trainer_job.trainer_job(obj, 2, SETTINGS, config_digest=DIGEST))["FTO_MICRO_BATCH_SPLIT"] == "4"
