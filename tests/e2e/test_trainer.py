"""The trainer on its own, against real MinIO with the real SmolLM2 model on CPU."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

import finetune_api.manifest

from devcluster import components
from helpers import BASE_MODEL_URI, wait_for

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "examples" / "datasets" / "support-tickets.jsonl"
SCHEMA = (ROOT / "examples" / "datasets" / "support-tickets.schema.json").read_text()
TRAINER = [sys.executable, "-m", "finetune_trainer"]


@pytest.fixture(scope="module")
def buckets(s3, base_model_uri):
    """A fresh bucket for this module's data and outputs."""
    name = f"trainer-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.upload_file(str(DATASET), name, "data/train.jsonl")
    s3.upload_file(str(ROOT / "examples" / "datasets" / "general-regression.jsonl"), name, "data/regression.jsonl")
    return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def job(bucket: str, name: str, tmp_path: Path, uid: str | None = None, dataset_key: str = "data/train.jsonl",
        evaluation: dict | None = None, **training) -> tuple[Path, dict]:
    spec = {
        "baseModel": {"name": "smollm2-135m-instruct", "uri": BASE_MODEL_URI},
        "dataset": {"uri": f"s3://{bucket}/{dataset_key}", "format": "promptCompletion", "validationSplit": 0.1,
                    "completionJsonSchema": SCHEMA},
        "credentials": {"secretRef": {"name": "unused-outside-a-cluster"}},
        "method": {"type": "lora", "lora": {"r": 16, "alpha": 32}},
        "training": {"batchSize": 4, "learningRate": 0.002, "maxSeqLength": 256, **training},
        "evaluation": evaluation or {"samples": 0},
        "resources": {"gpusPerNode": 0},
        "output": {"uri": f"s3://{bucket}/out/{name}/"},
    }
    port = free_port()
    doc = {"job": {"namespace": "tests", "name": name, "uid": uid or uuid.uuid4().hex}, "spec": spec,
           "runtime": {"metricsPort": port, "metricsHost": "127.0.0.1", "workDir": str(tmp_path.parent / "work"),
                       "terminationMessagePath": str(tmp_path / f"{name}.termination")}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, doc


def trainer_env(cluster) -> dict:
    return dict(os.environ, AWS_ENDPOINT_URL=cluster.s3_endpoint, AWS_ACCESS_KEY_ID=components.MINIO_USER,
                AWS_SECRET_ACCESS_KEY=components.MINIO_PASSWORD, AWS_DEFAULT_REGION="us-east-1",
                HF_HUB_OFFLINE="1")


def termination(doc: dict) -> dict:
    return json.loads(Path(doc["runtime"]["terminationMessagePath"]).read_text())


def read_json(s3, uri: str) -> dict:
    bucket, key = uri[5:].split("/", 1)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def trained(cluster, buckets, tmp_path_factory):
    """One real LoRA run, shared by the assertions below; progress is sampled while it runs."""
    tmp = tmp_path_factory.mktemp("lora")
    path, doc = job(buckets, "lora", tmp, maxSteps=30, evalEverySteps=15, checkpointEverySteps=15, evaluation={
        "samples": 6, "answerRegex": r"\{.*\}", "regressionUri": f"s3://{buckets}/data/regression.jsonl"})
    proc = subprocess.Popen(TRAINER + ["train", "--config", str(path)], env=trainer_env(cluster),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = doc["runtime"]["metricsPort"]
    samples = []
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=2) as resp:
                samples.append(json.loads(resp.read()))
            if samples[-1].get("step", 0) >= 3 and "metrics" not in samples[0]:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    samples[0]["metrics"] = resp.read().decode()
        except OSError:
            pass
        time.sleep(1)
    output = proc.stdout.read()
    assert proc.returncode == 0, output[-3000:]
    return {"doc": doc, "result": termination(doc), "progress": samples, "output": output}


def test_lora_run_succeeds_and_eval_loss_falls(trained):
    result = trained["result"]
    assert result["reason"] == "Succeeded" and result["steps"] == 30
    metrics = result["metrics"]
    assert metrics["eval_loss"] < metrics["initial_eval_loss"]


def test_adapter_and_manifest_land_in_s3_with_correct_sha256s(trained, s3):
    result = trained["result"]
    bucket, key = result["manifestUri"][5:].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    # status.result.adapterDigest's one definition: the sha256 of manifest.json's bytes as stored.
    assert result["adapterDigest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert finetune_api.manifest.parse(body, result["adapterDigest"]).digest == result["adapterDigest"]
    manifest = json.loads(body)
    names = {f["name"] for f in manifest["files"]}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= names
    prefix = key.rsplit("/", 1)[0]
    for f in manifest["files"]:
        data = s3.get_object(Bucket=bucket, Key=f"{prefix}/{f['name']}")["Body"].read()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]
    assert manifest["baseModel"]["digest"].startswith("sha256:")
    assert manifest["dataset"]["etag"] and manifest["configHash"].startswith("sha256:")
    assert manifest["steps"] == 30 and manifest["tokens"] > 0 and manifest["lora"]["r"] == 16
    assert "q_proj" in manifest["lora"]["targetModules"] and "down_proj" in manifest["lora"]["targetModules"]


def test_adapter_answers_in_the_dataset_format_where_the_base_model_does_not(trained):
    metrics = trained["result"]["metrics"]
    assert metrics["base_format_compliance"] <= 0.2
    assert metrics["format_compliance"] >= 0.5
    assert metrics["format_compliance"] > metrics["base_format_compliance"]
    assert metrics["regex_match"] >= metrics["format_compliance"]


def test_regression_set_is_scored_for_the_base_model_and_the_adapter(trained):
    metrics = trained["result"]["metrics"]
    assert 0 < metrics["base_regression_loss"] < 10 and 0 < metrics["regression_loss"] < 10
    assert metrics["regression_loss"] != metrics["base_regression_loss"]


def test_progress_and_prometheus_metrics_are_served_while_training(trained):
    progress = [p for p in trained["progress"] if p.get("phase") == "training" and p.get("step")]
    assert progress, "no progress sampled during training"
    last = progress[-1]
    assert last["totalSteps"] == 30 and last["tokensPerSecond"] > 0 and "etaSeconds" in last and "trainLoss" in last
    assert [c["step"] for c in trained["progress"][-1]["checkpoints"]] == [15, 30]
    metrics = trained["progress"][0]["metrics"]
    for name in ("fto_trainer_step", "fto_trainer_train_loss", "fto_trainer_tokens_per_second",
                 "fto_trainer_learning_rate", "fto_trainer_eta_seconds"):
        assert f'{name}{{job="lora",namespace="tests"}}' in metrics


def test_sigterm_midway_checkpoints_then_a_split_batch_resume_matches_an_uninterrupted_run(cluster, buckets, s3, tmp_path):
    env = trainer_env(cluster)
    steps = dict(maxSteps=12, evalEverySteps=12, checkpointEverySteps=100)
    straight_path, straight = job(buckets, "straight", tmp_path, **steps)
    assert subprocess.run(TRAINER + ["train", "--config", str(straight_path)], env=env,
                          capture_output=True).returncode == 0

    uid = uuid.uuid4().hex
    path, doc = job(buckets, "interrupted", tmp_path, uid=uid, **steps)
    proc = subprocess.Popen(TRAINER + ["train", "--config", str(path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    port = doc["runtime"]["metricsPort"]

    def at_step_4():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=2) as resp:
            return json.loads(resp.read()).get("step", 0) >= 4
    wait_for(at_step_4, timeout=240, interval=0.2, what="the run to reach step 4")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 15
    stopped = termination(doc)
    assert stopped["reason"] == "Preempted" and stopped["retryable"] and 4 <= stopped["step"] < 12

    # The relaunch splits each micro-batch in 2, as after an out-of-memory attempt under
    # spec.lifecycle.onOutOfMemory: the checkpoint still resumes and the steps are the same.
    resumed = subprocess.run(TRAINER + ["train", "--config", str(path)], env={**env, "FTO_MICRO_BATCH_SPLIT": "2"},
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"at step {stopped['step']}" in resumed.stderr and "split in 2" in resumed.stderr
    finished, reference = termination(doc), termination(straight)
    assert finished["steps"] == reference["steps"] == 12
    # Same batches, same RNG, same optimiser state: the resumed run ends where the uninterrupted one does.
    assert finished["metrics"]["eval_loss"] == pytest.approx(reference["metrics"]["eval_loss"], rel=1e-3)


def test_malformed_dataset_fails_before_training_with_line_numbers(cluster, buckets, s3, tmp_path):
    rows = [json.dumps({"prompt": "Where is my order?", "completion": json.dumps(
        {"category": "shipping", "priority": "low", "reply": "Soon."})})] * 4
    rows.insert(2, "{this is not json")
    rows.insert(4, json.dumps({"prompt": "Hi"}))
    rows.insert(6, json.dumps({"prompt": "Refund?", "completion": "Sure, refunded."}))
    s3.put_object(Bucket=buckets, Key="data/bad.jsonl", Body="\n".join(rows).encode())
    path, doc = job(buckets, "bad", tmp_path, dataset_key="data/bad.jsonl", maxSteps=5)
    for extra in ([], ["--validate-only"]):
        run = subprocess.run(TRAINER + ["train", "--config", str(path)] + extra, env=trainer_env(cluster),
                             capture_output=True, text=True)
        assert run.returncode == 11, run.stderr[-2000:]
        message = termination(doc)
        assert message["reason"] == "DatasetInvalid"
        assert "line 3: not valid JSON" in message["message"]
        assert "line 5: missing field 'completion'" in message["message"]
        assert "line 7: completion is not valid JSON" in message["message"]
    listed = s3.list_objects_v2(Bucket=buckets, Prefix="out/bad/")
    assert listed.get("KeyCount", 0) == 0, "nothing may be written when the data is invalid"


def test_validate_only_reports_dataset_stats(cluster, buckets, tmp_path):
    path, doc = job(buckets, "check", tmp_path, maxSteps=5)
    run = subprocess.run(TRAINER + ["train", "--config", str(path), "--validate-only"], env=trainer_env(cluster),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    stats = termination(doc)["datasetStats"]
    assert stats["rows"] + stats["validation_rows"] == sum(1 for _ in DATASET.open())
    assert stats["tokens"] > stats["trained_tokens"] > 0 and stats["error_count"] == 0


def test_qlora_without_cuda_fails_with_a_clear_error(cluster, buckets, tmp_path):
    path, doc = job(buckets, "qlora", tmp_path, maxSteps=5)
    doc["spec"]["method"] = {"type": "qlora"}
    doc["spec"]["resources"]["gpusPerNode"] = 1
    path.write_text(yaml.safe_dump(doc))
    run = subprocess.run(TRAINER + ["train", "--config", str(path)], env=trainer_env(cluster),
                         capture_output=True, text=True)
    assert run.returncode == 16
    message = termination(doc)
    assert message["reason"] == "UnsupportedHardware" and not message["retryable"]
    assert "qlora needs a CUDA GPU" in message["message"] and "does not fall back" in message["message"]


def test_two_processes_train_data_parallel_on_cpu_with_gloo(cluster, buckets, s3, tmp_path):
    path, doc = job(buckets, "ddp", tmp_path, maxSteps=4, evalEverySteps=4)
    env = trainer_env(cluster)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "finetune_trainer", "train", "--config", str(path)],
                         env=env, capture_output=True, text=True, timeout=600)
    # Each rank that fails prints one "finetune-trainer: <Reason>: ..." line; the first is the cause
    # (the other rank then only sees its peer's connection close).
    reasons = [line for line in run.stderr.splitlines() if "finetune-trainer: " in line]
    assert run.returncode == 0, "\n".join(reasons) + "\n" + run.stdout[-2000:] + run.stderr[-3000:]
    result = termination(doc)
    assert result["reason"] == "Succeeded" and result["steps"] == 4
    manifest = read_json(s3, result["manifestUri"])
    assert manifest["steps"] == 4


def test_early_stopping_stops_on_patience_and_keeps_the_best_checkpoint(cluster, buckets, s3, tmp_path):
    # minDelta 100 makes every evaluation after the first "no improvement": stop after patience 1.
    path, doc = job(buckets, "early", tmp_path, maxSteps=12, evalEverySteps=2, checkpointEverySteps=100,
                    earlyStopping={"metric": "eval_loss", "patience": 1, "minDelta": 100})
    env = trainer_env(cluster)
    run = subprocess.run(TRAINER + ["train", "--config", str(path)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    result = termination(doc)
    assert result["steps"] == 4, "patience 1: the evaluation at step 4 did not improve, so training stops there"
    listed = s3.list_objects_v2(Bucket=buckets, Prefix="out/early/checkpoints/step-00000002/state.json")
    assert listed.get("KeyCount") == 1, "the best checkpoint (step 2) is kept"
    best = read_json(s3, f"s3://{buckets}/out/early/checkpoints/step-00000002/state.json")
    # The adapter written is the best one: its evaluation is the step-2 evaluation.
    assert result["metrics"]["eval_loss"] == pytest.approx(best["evalLoss"], rel=1e-4)


def test_fsdp_shards_the_model_across_two_processes_and_writes_a_loadable_adapter(cluster, buckets, s3, tmp_path):
    path, doc = job(buckets, "fsdp", tmp_path, maxSteps=4, evalEverySteps=4, checkpointEverySteps=2,
                    distributedStrategy="fsdp")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "finetune_trainer", "train", "--config", str(path)],
                         env=trainer_env(cluster), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = termination(doc)
    assert result["reason"] == "Succeeded" and result["steps"] == 4
    assert result["metrics"]["eval_loss"] < result["metrics"]["initial_eval_loss"]
    # The gathered adapter is complete: every LoRA matrix of every layer, at full (unsharded) shape.
    from safetensors.torch import load as load_safetensors
    weights = load_safetensors(s3.get_object(Bucket=buckets, Key="out/fsdp/adapter/adapter_model.safetensors")["Body"].read())
    lora_a = {k: v for k, v in weights.items() if "lora_A" in k}
    assert len(lora_a) == 30 * 7  # SmolLM2-135M: 30 layers x 7 projections
    assert all(v.shape[0] == 16 for v in lora_a.values())
    listed = s3.list_objects_v2(Bucket=buckets, Prefix="out/fsdp/checkpoints/")
    assert any(o["Key"].endswith("step-00000004/state.json") for o in listed.get("Contents", []))
