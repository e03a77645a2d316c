"""The trainer: a batch/v1 Job per attempt, Indexed with a headless Service when multi-node.

The operator retries itself (resuming from checkpoints with backoff), so each attempt is its
own Job named <job>-train-<attempt> with backoffLimit 0: a restarted operator finds the
attempt's Job by name instead of launching it twice.
"""
from __future__ import annotations

from . import names, pod, trainer_config
from .settings import OperatorSettings

ATTEMPT_LABEL = "finetune.fto.dev/attempt"


def job_name(ftj_name: str, attempt: int) -> str:
    return names.child_name(ftj_name, f"train-{attempt}")


def trainer_args(spec: dict, job: str, settings: OperatorSettings) -> list:
    r = spec.get("resources") or {}
    nodes, gpus = r.get("nodes", 1), r.get("gpusPerNode", 1)
    train = ["train", "--config", f"{trainer_config.CONFIG_MOUNT}/{trainer_config.CONFIG_KEY}"]
    if nodes == 1 and gpus <= 1:
        return ["finetune-trainer", *train]
    run = ["torchrun", f"--nproc-per-node={max(gpus, 1)}"]
    if nodes > 1:
        # Indexed Job pods are <job>-<index>.<subdomain>: rank 0's pod is the rendezvous point.
        run += [f"--nnodes={nodes}", "--node-rank=$(JOB_COMPLETION_INDEX)",
                f"--master-addr={job}-0.{job}", f"--master-port={settings.rendezvous_port}"]
    else:
        run += ["--standalone"]
    return [*run, "-m", "finetune_trainer", *train]


def trainer_job(ftj: dict, attempt: int, settings: OperatorSettings) -> dict:
    name, spec = ftj["metadata"]["name"], ftj["spec"]
    r, life = spec.get("resources") or {}, spec.get("lifecycle") or {}
    nodes, gpus = r.get("nodes", 1), r.get("gpusPerNode", 1)
    job = job_name(name, attempt)
    extra_labels = {ATTEMPT_LABEL: str(attempt)}
    args = trainer_args(spec, job, settings)
    tpl = pod.template(ftj, settings, "trainer", args, gpus, scheduling=True, extra_labels=extra_labels)
    # The image's entrypoint is finetune-trainer; torchrun and the trainer are both on its PATH.
    tpl["spec"]["containers"][0]["command"] = [args[0]]
    tpl["spec"]["containers"][0]["args"] = args[1:]
    job_spec = {"backoffLimit": 0, "completions": nodes, "parallelism": nodes, "template": tpl}
    if nodes > 1:
        job_spec["completionMode"] = "Indexed"
        tpl["spec"]["subdomain"] = job
    if life.get("activeDeadlineSeconds"):
        job_spec["activeDeadlineSeconds"] = life["activeDeadlineSeconds"]
    labels = {**names.labels(name, "trainer"), **extra_labels}
    if r.get("queueName"):  # Kueue admits the Job by un-suspending it
        labels[pod.KUEUE_QUEUE_LABEL] = r["queueName"]
        job_spec["suspend"] = True
    if life.get("suspend"):
        job_spec["suspend"] = True
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job, "namespace": ftj["metadata"]["namespace"], "labels": labels,
                         "ownerReferences": [names.owner_reference(ftj)]},
            "spec": job_spec}


def headless_service(ftj: dict, attempt: int, settings: OperatorSettings) -> dict:
    """DNS for the rendezvous of a multi-node attempt: <job>-<index>.<job> resolves to each pod."""
    name = ftj["metadata"]["name"]
    job = job_name(name, attempt)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": job, "namespace": ftj["metadata"]["namespace"],
                         "labels": names.labels(name, "rendezvous"), "ownerReferences": [names.owner_reference(ftj)]},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"finetune.fto.dev/job": name[:names.MAX_NAME], ATTEMPT_LABEL: str(attempt)},
                     "ports": [{"name": "rendezvous", "port": settings.rendezvous_port}]}}
