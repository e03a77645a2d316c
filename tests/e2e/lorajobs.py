"""Real LoRA FineTuneJobs for the e2e tests that run the trainer on the process node: the demo
dataset in a fresh MinIO bucket, the S3 Secret, and a short SmolLM2 job spec."""
from __future__ import annotations

import uuid
from pathlib import Path

from kubernetes import client

from devcluster import components
from helpers import BASE_MODEL_URI

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
DATASET = ROOT / "examples" / "datasets" / "support-tickets.jsonl"


def data_bucket(s3, core, namespace: str, prefix: str) -> str:
    """A bucket holding the demo dataset at data/train.jsonl, and Secret s3-credentials for it."""
    bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(DATASET), bucket, "data/train.jsonl")
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="s3-credentials", labels={"finetune.fto.dev/credentials": "true"}),
        string_data={"AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD}))
    return bucket


def lora_job(cluster, bucket: str, name: str, steps: int = 6, dataset_key: str = "data/train.jsonl",
             **output) -> dict:
    """A CPU LoRA job on SmolLM2: `steps` steps, evaluated and checkpointed every 3."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "metadata": {"name": name},
            "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": BASE_MODEL_URI},
                     "dataset": {"uri": f"s3://{bucket}/{dataset_key}", "format": "promptCompletion",
                                 "validationSplit": 0.1},
                     "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
                     "training": {"maxSteps": steps, "batchSize": 4, "learningRate": 0.002, "maxSeqLength": 256,
                                  "evalEverySteps": 3, "checkpointEverySteps": 3},
                     "evaluation": {"samples": 0},
                     "resources": {"gpusPerNode": 0},
                     "output": {"uri": f"s3://{bucket}/out/{name}/", **output}}}
