"""Acceptance of issue 14 at scale: a 1 GB chat dataset in MinIO with one malformed row 70 % of the way in,
validated through the operator by the validate pod with the default memory limit (settings.validate_memory,
2Gi): the job fails DatasetInvalid naming that one line, and the validation's peak RSS stayed under the limit.

The process node runs pods as plain processes (no cgroups, no RLIMIT: see hack/devcluster/processnode), so
a limit is not enforced there and an over-limit pass would not be OOM-killed. The trainer reports its own
peak RSS (ru_maxrss) as datasetStats.peakRssBytes in the pod's termination message, and this test asserts
it. The dataset is generated deterministically and streamed to MinIO as a multipart upload (never on local
disk). FTO_SCALE_DATASET_BYTES (e.g. 100MB) shrinks it for a quicker local check; CI runs the full 1 GB.
"""
from __future__ import annotations

import json
import os
import time

import pytest

import lorajobs
import synthetic_chat
from operator_process import OperatorProcess

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
SIZE = synthetic_chat.parse_size(os.environ.get("FTO_SCALE_DATASET_BYTES") or "1GB")
UNITS = {"Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3}


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory quantity ('2Gi', '1500M', '1073741824') in bytes."""
    for suffix in sorted(UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * UNITS[suffix])
    return int(text)


@pytest.fixture
def operator(cluster, namespace, tmp_path):
    proc = OperatorProcess(cluster, [namespace], tmp_path / "operator.log").start()
    yield proc
    proc.stop()


def validate_pod_outcome(core, crds, namespace: str, name: str, timeout: float) -> tuple[dict, object]:
    """The job's status once it is terminal and the validate pod as last seen (the operator may delete it)."""
    deadline, pod = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            pod = core.read_namespaced_pod(f"{name}-validate", namespace)
        except Exception:  # noqa: BLE001 - not created yet, or already cleaned up
            pass
        status = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", name).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            return status, pod
        time.sleep(2)
    raise AssertionError(f"{name} did not finish within {timeout:.0f}s")


def termination_message(pod) -> dict:
    state = pod.status.container_statuses[0].state
    assert state.terminated is not None, f"the validate container has not terminated: {state}"
    return json.loads(state.terminated.message)


@pytest.mark.timeout(3600)
def test_one_gigabyte_dataset_fails_dataset_invalid_naming_its_one_bad_line_within_the_validate_memory_limit(
        cluster, crds, core, batch, namespace, operator, s3, base_model_uri):
    bucket = lorajobs.data_bucket(s3, core, namespace, "scale")
    info = synthetic_chat.upload(s3, bucket, "data/big.jsonl", SIZE, bad_at=0.7)
    assert info.bad_line and info.rows > 1000 and info.bytes >= SIZE
    job = lorajobs.lora_job(cluster, bucket, "big", steps=1, dataset_key="data/big.jsonl")
    job["spec"]["dataset"]["format"] = "chat"
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", job)

    status, pod = validate_pod_outcome(core, crds, namespace, "big", timeout=3300)
    assert status["phase"] == "Failed" and status["reason"] == "DatasetInvalid", (status, operator.log()[-3000:])
    assert f"line {info.bad_line}: " in status["message"] and "1 invalid row" in status["message"], status["message"]
    assert batch.list_namespaced_job(namespace).items == [], "no trainer Job for invalid data"

    assert pod is not None, "the validate pod was never seen"
    limit = pod.spec.containers[0].resources.limits["memory"]
    assert limit == "2Gi", f"the validate pod runs with the operator's default memory limit, got {limit}"
    message = termination_message(pod)
    assert message["reason"] == "DatasetInvalid"
    peak = message["stats"]["peakRssBytes"]
    assert 0 < peak < quantity_bytes(limit), f"validation peaked at {peak / 2 ** 30:.2f} GiB, over the {limit} limit"
    print(f"\n{info.bytes / 1e9:.2f} GB, {info.rows} rows, bad line {info.bad_line}: peak RSS {peak / 2 ** 20:.0f} MiB")
