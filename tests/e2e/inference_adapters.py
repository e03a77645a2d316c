"""Real PEFT LoRA adapters for SmolLM2, written to S3 with a manifest in the trainer's format.

Cheaper than training: get_peft_model + non-zero random lora_B, so the adapter really changes the
output, then save_pretrained. The manifest mirrors finetune_trainer.train._write_result (file
names under adapter/, sha256 per file, lora r/alpha/targetModules, baseModel name and digest).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from finetune_trainer import s3 as s3mod


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_adapter(base_folder: Path, out: Path, rank: int, seed: int, targets=("q_proj", "v_proj")) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets),
                                            task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.save_pretrained(str(out), safe_serialization=True)


def manifest_for(folder: Path, rank: int, base_digest: str, targets=("q_proj", "v_proj"),
                 base_name: str = "smollm2-135m-instruct") -> dict:
    files = [{"name": f"adapter/{p.relative_to(folder).as_posix()}", "sha256": _sha256(p), "size": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file()]
    return {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "AdapterManifest",
            "job": {"namespace": "e2e", "name": "synthetic", "uid": "0"}, "method": "lora", "modelType": "llama",
            "lora": {"r": rank, "alpha": 2 * rank, "targetModules": sorted(targets)}, "files": files,
            "baseModel": {"name": base_name, "uri": None, "digest": base_digest},
            "dataset": None, "datasetStats": None, "configHash": "synthetic", "trainerVersion": "0.1.0",
            "trainerImage": "", "metrics": {}, "steps": 0, "tokens": 0, "wallSeconds": 0, "createdAt": "2026-01-01T00:00:00Z"}


def upload(s3, folder: Path, manifest: dict, prefix: str) -> dict:
    """Uploads adapter/ and manifest.json under prefix; returns the preload body's URIs and digest."""
    s3mod.upload_folder(folder, s3mod.join(prefix, "adapter"), s3)
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    bucket, key = s3mod.parse_uri(s3mod.join(prefix, "manifest.json"))
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return {"adapterUri": s3mod.join(prefix, "adapter"), "manifestUri": s3mod.join(prefix, "manifest.json"),
            "manifestDigest": "sha256:" + hashlib.sha256(body).hexdigest()}


def publish(s3, base_folder: Path, prefix: str, rank: int, seed: int, base_digest: str, **manifest_overrides) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "adapter"
        make_adapter(base_folder, folder, rank, seed)
        manifest = manifest_for(folder, rank, base_digest)
        manifest.update(manifest_overrides)
        return upload(s3, folder, manifest, prefix)


def tampered(s3, base_folder: Path, base_digest: str, prefix: str, seed: int) -> dict:
    """A genuine manifest whose adapter weights were replaced after it was written."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "adapter"
        make_adapter(base_folder, folder, rank=4, seed=seed)
        manifest = manifest_for(folder, 4, base_digest)
        make_adapter(base_folder, Path(tmp) / "other", rank=4, seed=seed + 1)
        (Path(tmp) / "other" / "adapter_model.safetensors").replace(folder / "adapter_model.safetensors")
        return upload(s3, folder, manifest, prefix) | {"check": s3mod.join(prefix, "adapter")}


def serving_namespace(core, cluster, prefix: str, token_secret: dict) -> str:
    """A fresh namespace with the agents' admin-token Secret and the S3 Secret the pods read."""
    import uuid
    from kubernetes import client
    from devcluster import components
    from helpers import wait_for
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait_for(lambda: core.read_namespaced_service_account("default", ns), what="default ServiceAccount")
    core.create_namespaced_secret(ns, token_secret)
    core.create_namespaced_secret(ns, {"metadata": {"name": "s3-credentials",
                                                    "labels": {"finetune.fto.dev/credentials": "true"}}, "stringData": {
        "AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD,
        "AWS_ENDPOINT_URL": cluster.s3_endpoint}})
    return ns
