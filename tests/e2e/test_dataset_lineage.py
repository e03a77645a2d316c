"""Content-addressed dataset lineage end to end (issue 14 item 4), through the operator on the process node:
- a real LoRA job's FineTuneJob and ModelVersion lineage carry the sha256 of the bytes uploaded;
- overwriting the dataset object between validation and training ends in DatasetChanged (permanent, one
  attempt). The job is held between the two by spec.lifecycle.suspend: the operator validates a suspended
  job (no Job yet), records what it validated, and creates the trainer Job only once it is resumed."""
from __future__ import annotations

import hashlib
import json
import time

import pytest

import lorajobs
from operator_process import OperatorProcess

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
ROWS = [{"prompt": f"Ticket {i}: my order #{100 + i} is late.", "completion": f"Sorry! Order #{100 + i} ships today."}
        for i in range(8)]
BODY = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


@pytest.fixture
def operator(cluster, namespace, tmp_path):
    proc = OperatorProcess(cluster, [namespace], tmp_path / "operator.log").start()
    yield tmp_path / "operator.log"
    proc.stop()


@pytest.fixture
def bucket(s3, core, namespace, base_model_uri):
    name = lorajobs.data_bucket(s3, core, namespace, "lin")
    s3.put_object(Bucket=name, Key="data/tiny.jsonl", Body=BODY)
    return name


def tiny_job(cluster, bucket: str, name: str, **output) -> dict:
    job = lorajobs.lora_job(cluster, bucket, name, steps=1, dataset_key="data/tiny.jsonl", **output)
    job["spec"]["training"].update(batchSize=2, maxSeqLength=64)
    return job


def status_of(crds, namespace: str, name: str, plural: str = "finetunejobs") -> dict:
    return crds.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name).get("status") or {}


def wait_for(what: str, check, timeout: float, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log.read_text()[-3000:]}" if log else ""))


def test_the_model_version_lineage_has_the_sha256_of_the_training_object(cluster, crds, namespace, operator,
                                                                        bucket, s3):
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", tiny_job(
        cluster, bucket, "lin", registerModelVersion={"model": "lin-bot", "version": "v1"}))
    status = wait_for("the job to finish", lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed") else None)(
        status_of(crds, namespace, "lin")), 420, operator)
    assert status["phase"] == "Succeeded", status
    want = {"role": "train", "uri": f"s3://{bucket}/data/tiny.jsonl", "sha256": hashlib.sha256(BODY).hexdigest(),
            "bytes": len(BODY)}
    assert status["datasetStats"]["sources"] == [want]
    assert status["lineage"]["datasets"] == [want]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="out/lin/manifest.json")["Body"].read())
    assert manifest["dataset"]["sources"] == [want]
    lineage = wait_for("the ModelVersion's lineage", lambda: (status_of(crds, namespace, "lin-bot-v1", "modelversions")
                                                               .get("lineage") or {}).get("datasets"), 120, operator)
    assert lineage == [want]


def test_overwriting_the_dataset_between_validation_and_training_ends_in_dataset_changed(
        cluster, crds, batch, namespace, operator, bucket, s3):
    job = tiny_job(cluster, bucket, "swap")
    job["spec"]["lifecycle"] = {"suspend": True}
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", job)

    def validated_and_held():
        s = status_of(crds, namespace, "swap")
        conds = {c["type"]: c["status"] for c in s.get("conditions") or []}
        return s if conds.get("Validated") == "True" and s.get("phase") == "Suspended" else None

    held = wait_for("validation of the suspended job", validated_and_held, 240, operator)
    assert held["datasetStats"]["sources"][0]["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert batch.list_namespaced_job(namespace).items == [], "no trainer Job while suspended"

    swapped = BODY.replace(b"ships today", b"was lost!!")
    s3.put_object(Bucket=bucket, Key="data/tiny.jsonl", Body=swapped)
    crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "swap",
                                        {"spec": {"lifecycle": {"suspend": False}}})
    status = wait_for("the job to finish", lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed") else None)(
        status_of(crds, namespace, "swap")), 300, operator)
    assert (status["phase"], status["reason"]) == ("Failed", "DatasetChanged"), status
    assert status["attempts"] == 1, "DatasetChanged is permanent: not retried"
    assert "changed after validation" in status["message"]
    assert hashlib.sha256(BODY).hexdigest() in status["message"]
    assert hashlib.sha256(swapped).hexdigest() in status["message"]
