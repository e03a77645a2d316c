"""The builders' manifests on the real cluster: accepted, scheduled on GPU nodes, owned by the job."""
from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from finetune_operator.builders import trainer_config, trainer_job, validate_pod
from finetune_operator.builders.settings import OperatorSettings
from helpers import job_finished, wait_for

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


def make_ftj(crds, namespace: str, resources: dict) -> dict:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "metadata": {"name": "multi"},
            "spec": {"baseModel": {"name": "smollm2", "uri": "s3://models/smollm2/"},
                     "dataset": {"uri": "s3://datasets/train.jsonl", "format": "promptCompletion"},
                     "credentials": {"secretRef": {"name": "s3"}},
                     "resources": resources, "output": {"uri": "s3://outputs/multi/"}}}
    return crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", body)


def test_multi_node_trainer_job_runs_on_two_fake_gpu_nodes_and_is_collected_with_its_owner(
        api, crds, core, batch, namespace):
    ftj = make_ftj(crds, namespace, {"nodes": 2, "gpusPerNode": 8,
                                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                      "effect": "NoSchedule"}]})
    settings = OperatorSettings()
    core.create_namespaced_config_map(namespace, trainer_config.config_map(ftj, settings))
    core.create_namespaced_service(namespace, trainer_job.headless_service(ftj, 1, settings))
    job = trainer_job.trainer_job(ftj, 1, settings)
    job["spec"]["template"]["metadata"]["annotations"]["fto.dev/fake-duration"] = "2s"  # kwok runs it for 2 s
    batch.create_namespaced_job(namespace, job)

    assert wait_for(lambda: job_finished(batch, "multi-train-1", namespace), what="the trainer Job") == "Complete"
    pods = core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=multi-train-1").items
    assert len(pods) == 2
    assert len({p.spec.node_name for p in pods}) == 2, "8 GPUs each: the two pods need two nodes"
    assert all(p.spec.node_name.startswith("fto-gpu-") for p in pods)
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1"]
    assert {p.spec.subdomain for p in pods} == {"multi-train-1"}

    crds.delete_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "multi")

    def children_gone():
        try:
            batch.read_namespaced_job("multi-train-1", namespace)
            return False
        except ApiException as err:
            return err.status == 404
    wait_for(children_gone, timeout=60, what="garbage collection of the trainer Job")
    assert core.list_namespaced_config_map(namespace, label_selector="finetune.fto.dev/job=multi").items == []


def test_validate_pod_is_accepted_by_the_apiserver(api, crds, core, namespace):
    ftj = make_ftj(crds, namespace, {"gpusPerNode": 0})
    pod = validate_pod.validate_pod(ftj, OperatorSettings())
    created = core.create_namespaced_pod(namespace, pod, dry_run="All")
    assert created.spec.automount_service_account_token is False
    assert created.spec.containers[0].security_context.read_only_root_filesystem is True
