"""The FineTuneJob controller end to end: kubectl apply -> validate -> train on the process node -> Succeeded."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from devcluster import components
from helpers import BASE_MODEL_URI

ROOT = Path(__file__).resolve().parents[2]


def client_for(cluster):
    from kubernetes import config
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


@pytest.fixture
def operator(cluster, namespace, tmp_path):
    """The operator as a process watching this test's namespace, with the admin kubeconfig."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / "operator.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "finetune_operator", "--standalone", "--namespace", namespace,
                             "--liveness", f"http://127.0.0.1:{port}/healthz"],
                            env=dict(os.environ, KUBECONFIG=str(cluster.kubeconfig)), stdout=log,
                            stderr=subprocess.STDOUT)
    yield tmp_path / "operator.log"
    # kopf puts a finalizer on objects it runs timers for: delete them while it still runs.
    crds = client.CustomObjectsApi(client_for(cluster))
    crds.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and crds.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "finetunejobs")["items"]:
        time.sleep(0.3)
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def data_bucket(s3, namespace, core, base_model_uri):
    bucket = f"ctl-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(ROOT / "examples" / "datasets" / "support-tickets.jsonl"), bucket, "data/train.jsonl")
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="s3-credentials"),
                                                             string_data={"AWS_ACCESS_KEY_ID": components.MINIO_USER,
                                                                          "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD}))
    return bucket


def finetunejob(cluster, bucket: str, name: str, dataset_key: str = "data/train.jsonl", **output) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "metadata": {"name": name},
            "spec": {"baseModel": {"name": "smollm2-135m-instruct",
                                   "uri": BASE_MODEL_URI},
                     "dataset": {"uri": f"s3://{bucket}/{dataset_key}", "format": "promptCompletion",
                                 "validationSplit": 0.1},
                     "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
                     "training": {"maxSteps": 6, "batchSize": 4, "learningRate": 0.002, "maxSeqLength": 256,
                                  "evalEverySteps": 3, "checkpointEverySteps": 3},
                     "evaluation": {"samples": 0},
                     "resources": {"gpusPerNode": 0},
                     "output": {"uri": f"s3://{bucket}/out/{name}/", **output}}}


def watch_phases(crds, namespace: str, name: str, timeout: float = 420) -> tuple[list, dict]:
    seen, obj, deadline = [], {}, time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", name)
        status = obj.get("status") or {}
        snapshot = (status.get("phase"), (status.get("progress") or {}).get("display"))
        if snapshot[0] and (not seen or seen[-1] != snapshot):
            seen.append(snapshot)
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            return seen, obj
        time.sleep(0.5)
    raise AssertionError(f"{name} did not finish; phases seen: {seen}")


def events_for(core, namespace: str, name: str) -> list:
    return [(e.type, e.reason) for e in core.list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.involved_object.kind == "FineTuneJob"]


def test_lora_job_validates_trains_on_the_process_node_and_registers_a_model_version(
        cluster, crds, core, batch, namespace, operator, data_bucket, s3):
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", finetunejob(
        cluster, data_bucket, "bot", registerModelVersion={"model": "support-bot", "version": "v1"}))
    phases, obj = watch_phases(crds, namespace, "bot")
    status = obj["status"]
    assert status["phase"] == "Succeeded", (status, operator.read_text()[-3000:])
    names = [p for p, _ in phases]
    assert names.index("Validating") < names.index("Running") < names.index("Succeeded")
    assert any(display and display.endswith("/6") for _, display in phases), f"no progress seen: {phases}"
    assert status["progress"]["display"] == "6/6" and status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Validated"]["status"] == "True" and conditions["Succeeded"]["status"] == "True"
    assert all(c["observedGeneration"] == 1 for c in conditions.values())
    assert status["datasetStats"]["rows"] > 0 and status["trainerJob"] == "bot-train-1"
    manifest = json.loads(s3.get_object(Bucket=data_bucket, Key="out/bot/manifest.json")["Body"].read())
    assert status["result"]["adapterUri"] == f"s3://{data_bucket}/out/bot/adapter" and manifest["steps"] == 6
    mv = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "support-bot-v1")
    assert mv["spec"]["adapter"] == {"fromJob": {"name": "bot"}} and not mv["metadata"].get("ownerReferences")
    reasons = {r for _, r in events_for(core, namespace, "bot")}
    assert {"Validating", "Training", "Trained"} <= reasons
    validate = core.read_namespaced_pod("bot-validate", namespace)
    assert "nvidia.com/gpu" not in str(validate.spec.containers[0].resources)


def test_malformed_dataset_ends_in_dataset_invalid_before_any_trainer_job(
        cluster, crds, batch, namespace, operator, data_bucket, s3):
    good = json.dumps({"prompt": "Hi", "completion": "Hello"})
    s3.put_object(Bucket=data_bucket, Key="data/bad.jsonl", Body=f"{good}\n{{broken\n{good}\n".encode())
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs",
                                         finetunejob(cluster, data_bucket, "bad", dataset_key="data/bad.jsonl"))
    _, obj = watch_phases(crds, namespace, "bad", timeout=240)
    status = obj["status"]
    assert status["phase"] == "Failed" and status["reason"] == "DatasetInvalid"
    assert "line 2: not valid JSON" in status["message"]
    assert batch.list_namespaced_job(namespace).items == [], "no trainer Job (and no GPU) for invalid data"
