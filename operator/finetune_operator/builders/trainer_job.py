"""The trainer: a batch/v1 Job per attempt, Indexed with a headless Service when multi-node.

The operator retries itself (resuming from checkpoints with backoff), so each attempt is its
own Job named <job>-train-<attempt> with backoffLimit 0: a restarted operator finds the
attempt's Job by name instead of launching it twice.
"""
from __future__ import annotations

import json

from finetune_api import datasets

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


def trainer_job(ftj: dict, attempt: int, settings: OperatorSettings,
                deadline_left: int | None = None, suspend: bool = False, *, config_digest: str = "") -> dict:
    """The attempt's Job. deadline_left: seconds of spec.lifecycle.activeDeadlineSeconds not yet used
    by earlier attempts (the deadline counts from the first start, not per attempt). config_digest:
    trainer_config.digest of the config document the pods must find mounted (the reconciler always
    passes it; empty only for a manifest rendered outside it)."""
    name, spec = ftj["metadata"]["name"], ftj["spec"]
    r, life = spec.get("resources") or {}, spec.get("lifecycle") or {}
    nodes, gpus = r.get("nodes", 1), r.get("gpusPerNode", 1)
    job = job_name(name, attempt)
    extra_labels = {ATTEMPT_LABEL: str(attempt)}
    args = trainer_args(spec, job, settings)
    # The ConfigMap is shared by all attempts; the attempt number tells the trainer it is a relaunch
    # (it then resumes from the newest checkpoint of this job under spec.output.uri).
    env = [{"name": "FTO_TRAINER_ATTEMPT", "value": str(attempt)}, *trainer_config.digest_env(config_digest)]
    split = int((ftj.get("status") or {}).get("microBatchSplit") or 1)
    if split > 1:  # spec.lifecycle.onOutOfMemory: SplitMicroBatch after an out-of-memory attempt
        env.append({"name": "FTO_MICRO_BATCH_SPLIT", "value": str(split)})
    sources = ((ftj.get("status") or {}).get("datasetStats") or {}).get("sources")
    if sources:  # what validation checked: the trainer refuses other content (DatasetChanged)
        env.append({"name": datasets.ENV, "value": json.dumps(sources, separators=(",", ":"), sort_keys=True)})
    tpl = pod.template(ftj, settings, "trainer", args, gpus, scheduling=True, extra_labels=extra_labels,
                       extra_env=env)
    # The image's entrypoint is finetune-trainer; torchrun and the trainer are both on its PATH.
    tpl["spec"]["containers"][0]["command"] = [args[0]]
    tpl["spec"]["containers"][0]["args"] = args[1:]
    job_spec = {"backoffLimit": 0, "completions": nodes, "parallelism": nodes, "template": tpl}
    if nodes > 1:
        job_spec["completionMode"] = "Indexed"
        tpl["spec"]["subdomain"] = job
    if life.get("activeDeadlineSeconds"):
        job_spec["activeDeadlineSeconds"] = max(1, int(deadline_left if deadline_left is not None
                                                       else life["activeDeadlineSeconds"]))
    labels = {**names.labels(name, "trainer"), **extra_labels}
    if r.get("queueName"):  # Kueue admits the Job by un-suspending it
        labels[pod.KUEUE_QUEUE_LABEL] = r["queueName"]
        job_spec["suspend"] = True
    if life.get("suspend") or suspend:
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
