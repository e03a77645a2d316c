"""The FineTuneJob controller end to end: kubectl apply -> validate -> train on the process node -> Succeeded."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import lorajobs
from operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]


def client_for(cluster):
    from kubernetes import config
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


GROUP, VERSION = "finetune.fto.dev", "v1alpha1"


@pytest.fixture
def operator(cluster, namespace, tmp_path):
    """The operator as a process watching this test's namespace, with the admin kubeconfig."""
    proc = OperatorProcess(cluster, [namespace], tmp_path / "operator.log").start()
    yield tmp_path / "operator.log"
    proc.stop()


@pytest.fixture
def data_bucket(s3, namespace, core, base_model_uri):
    return lorajobs.data_bucket(s3, core, namespace, "ctl")


finetunejob = lorajobs.lora_job


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


ORDER = {"Pending": 0, "Validating": 1, "Queued": 2, "Running": 3, "Succeeded": 4, "Failed": 4, "Cancelled": 4}


class PhaseRecorder:
    """Every version of one FineTuneJob the apiserver sends by watch (not a poll, which could
    miss a flash between two reads): (phase, reason, attempts) in order."""

    def __init__(self, crds, namespace: str, name: str):
        import threading
        from kubernetes import watch
        self.crds, self.namespace, self.name, self.seen = crds, namespace, name, []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "PhaseRecorder":
        self._thread.start()
        return self

    def _run(self) -> None:
        for event in self._watch.stream(self.crds.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                        "finetunejobs", field_selector=f"metadata.name={self.name}"):
            status = event["object"].get("status") or {}
            if status.get("phase") and (not self.seen or self.seen[-1][:2] != (status["phase"], status.get("reason"))):
                self.seen.append((status["phase"], status.get("reason"), status.get("attempts") or 0))

    def stop(self) -> list:
        self._watch.stop()
        return self.seen


def assert_phases_never_go_back(seen: list) -> None:
    """Non-decreasing along the documented order; Queued after Running only for a new attempt."""
    for (before, _, attempts_before), (after, reason, attempts) in zip(seen, seen[1:]):
        if attempts > attempts_before:
            continue
        assert ORDER[after] >= ORDER[before], f"phase went back from {before} to {after} ({reason}): {seen}"


def events_for(core, namespace: str, name: str) -> list:
    return [(e.type, e.reason) for e in core.list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.involved_object.kind == "FineTuneJob"]


def test_lora_job_validates_trains_on_the_process_node_and_registers_a_model_version(
        cluster, crds, core, batch, namespace, operator, data_bucket, s3):
    recorder = PhaseRecorder(crds, namespace, "bot").start()
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", finetunejob(
        cluster, data_bucket, "bot", registerModelVersion={"model": "support-bot", "version": "v1"}))
    phases, obj = watch_phases(crds, namespace, "bot")
    deadline = time.monotonic() + 15  # the watch may deliver the last version after the poll saw it
    while time.monotonic() < deadline and not (recorder.seen and recorder.seen[-1][0] == "Succeeded"):
        time.sleep(0.1)
    recorded = recorder.stop()
    assert recorded and recorded[-1][0] == "Succeeded", recorded
    assert_phases_never_go_back(recorded)
    assert "Running" in [p for p, _, _ in recorded], recorded
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
    lineage = status["lineage"]
    assert lineage["baseModelDigest"] == manifest["baseModel"]["digest"] and lineage["configHash"] == manifest["configHash"]
    assert lineage["datasetEtag"] and status["result"]["adapterDigest"].startswith("sha256:")
    assert "files verified" in conditions["Succeeded"]["message"]
    assert status["progress"]["history"], "the loss curve for kubectl finetune plot"
    # No finalizer and no operator annotations: deleting works without the operator, GitOps sees no drift.
    assert not obj["metadata"].get("finalizers") and not any(
        "kopf" in key for key in (obj["metadata"].get("annotations") or {}))
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
