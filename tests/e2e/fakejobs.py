"""FineTuneJobs whose pods run on the kwok GPU nodes: real operator, real Jobs, fake trainer processes.

kwok plays the trainer: annotations on the FineTuneJob become pod annotations (the operator's
documented finetune.fto.dev/[trainer-]pod-annotations passthrough) that tell kwok's stages how
long a pod runs, its exit code and its termination message. A successful fake trainer reports a
result whose manifest and adapter file really are in MinIO, so the operator's sha256
verification runs for real.
"""
from __future__ import annotations

import hashlib
import json
import uuid

from kubernetes import client

from devcluster import components

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
KWOK_SETTINGS = {  # validate-only pods go to the fake nodes too
    "FTO_VALIDATE_NODE_SELECTOR": json.dumps({"type": "kwok"}),
    "FTO_VALIDATE_TOLERATIONS": json.dumps([{"key": "nvidia.com/gpu", "operator": "Exists"}]),
    "FTO_PROGRESS_INTERVAL_SECONDS": "1",
}
BASE_DIGEST = "sha256:" + "ab" * 32


def setup_namespace(core, s3, namespace: str) -> str:
    """A bucket and the Secret with MinIO's keys; returns the bucket."""
    bucket = f"fake-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="s3-credentials", labels={"finetune.fto.dev/credentials": "true"}),
        string_data={"AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD}))
    return bucket


def upload_result(s3, bucket: str, name: str, tamper: bool = False) -> dict:
    """A real manifest + adapter file under out/<name>/; returns the trainer's termination message fields."""
    weights = f"adapter weights of {name}".encode()
    s3.put_object(Bucket=bucket, Key=f"out/{name}/adapter/adapter_model.safetensors",
                  Body=weights + (b"tampered" if tamper else b""))
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AdapterManifest", "method": "lora",
                "lora": {"r": 8, "alpha": 16, "targetModules": ["q_proj", "v_proj"]},
                "files": [{"name": "adapter/adapter_model.safetensors", "sha256": hashlib.sha256(weights).hexdigest(),
                           "size": len(weights)}],
                "baseModel": {"name": "smollm2-135m-instruct", "digest": BASE_DIGEST},
                "dataset": {"uri": f"s3://{bucket}/data/train.jsonl", "etag": "etag-1"},
                "configHash": "sha256:" + "cd" * 32, "trainerImage": "finetune-operator/trainer:test",
                "metrics": {"eval_loss": 1.25}, "steps": 10, "tokens": 1000, "wallSeconds": 3.0}
    body = json.dumps(manifest).encode()
    s3.put_object(Bucket=bucket, Key=f"out/{name}/manifest.json", Body=body)
    return {"reason": "Succeeded", "exitCode": 0, "retryable": False, "message": "trained",
            "adapterUri": f"s3://{bucket}/out/{name}/adapter", "manifestUri": f"s3://{bucket}/out/{name}/manifest.json",
            "adapterDigest": "sha256:" + hashlib.sha256(body).hexdigest(), "steps": 10,
            "datasetStats": {"rows": 100, "tokens": 5000}}


def finetunejob(cluster, bucket: str, name: str, duration: str = "2s", result: dict | None = None,
                trainer: dict | None = None, nodes: int = 1, gpus: int = 1, **lifecycle) -> dict:
    """trainer: extra annotations for the trainer pods only (e.g. a fake exit code)."""
    # All pods (the validate-only pod too) report the result; the trainer pods run for `duration`.
    pods = {"fto.dev/fake-termination-message": json.dumps(result or {"reason": "Succeeded", "exitCode": 0,
                                                                     "datasetStats": {"rows": 100}})}
    trainer = {"fto.dev/fake-duration": duration, **(trainer or {})}
    if "fto.dev/fake-exit-code" in trainer and result is None:
        # Killed without a word, like a SIGKILLed trainer: no JSON result, only the exit code.
        trainer = {"fto.dev/fake-termination-message": "", **trainer}
    annotations = {"finetune.fto.dev/pod-annotations": json.dumps(pods),
                   "finetune.fto.dev/trainer-pod-annotations": json.dumps(trainer)}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": f"s3://{bucket}/model/"},
                     "dataset": {"uri": f"s3://{bucket}/data/train.jsonl", "format": "promptCompletion"},
                     "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
                     "method": {"type": "lora"},
                     "resources": {"gpusPerNode": gpus, "nodes": nodes,
                                   "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
                     "lifecycle": lifecycle,
                     "output": {"uri": f"s3://{bucket}/out/{name}/"}}}


def get(crds, namespace: str, name: str) -> dict:
    return crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", name)


def status(crds, namespace: str, name: str) -> dict:
    return get(crds, namespace, name).get("status") or {}


def phase_is(crds, namespace: str, name: str, *phases: str):
    s = status(crds, namespace, name)
    return s if s.get("phase") in phases else None
