"""The two APIs, against the real apiserver: good manifests pass, bad ones fail with useful messages."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from helpers import kubectl

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((Path(__file__).parent / "crd_corpus").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
PLURALS = {"FineTuneJob": "finetunejobs", "ModelVersion": "modelversions"}


def create(objects, namespace: str, body: dict):
    return objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[body["kind"]], body,
                                                   field_validation="Strict")


def rejection(objects, namespace: str, body: dict) -> str:
    with pytest.raises(ApiException) as err:
        create(objects, namespace, body)
    assert err.value.status in (400, 422), err.value.body
    return json.loads(err.value.body)["message"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_accepted_by_server_side_apply(cluster, crds, namespace, path):
    result = kubectl(cluster, "apply", "--server-side", "-n", namespace, "-f", str(path))
    assert result.returncode == 0, result.stderr
    assert "serverside-applied" in result.stdout


def test_the_corpus_has_at_least_40_malformed_manifests():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_malformed_manifest_is_rejected_with_a_message_naming_the_field_and_fix(crds, namespace, path):
    text = path.read_text()
    expected = [line.split("# expect: ", 1)[1] for line in text.splitlines() if line.startswith("# expect: ")]
    assert expected, f"{path.name} has no '# expect:' line"
    message = rejection(crds, namespace, yaml.safe_load(text))
    for fragment in expected:
        assert fragment in message, f"{path.name}: {fragment!r} not in the apiserver's message:\n{message}"


def minimal_job(name: str = "job") -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "metadata": {"name": name},
            "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://fto-models/smollm2-135m-instruct/"},
                     "dataset": {"uri": "s3://fto-data/support/train.jsonl", "format": "promptCompletion"},
                     "output": {"uri": "s3://fto-output/job/"}}}


def test_schema_defaults_are_filled_in_by_the_apiserver(crds, namespace):
    job = create(crds, namespace, minimal_job())
    spec = job["spec"]
    assert spec["method"] == {"type": "lora"}
    assert spec["training"]["learningRate"] == 0.0002 and spec["training"]["lrScheduler"] == "cosine"
    assert spec["resources"] == {"gpusPerNode": 1, "nodes": 1}
    assert spec["lifecycle"] == {"suspend": False, "cancel": False, "retryLimit": 3,
                                 "onOutOfMemory": {"action": "Fail", "maxSplit": 8}}
    assert spec["dataset"]["fileFormat"] == "auto" and spec["baseModel"]["architecture"] == "auto"
    assert "epochs" not in spec["training"] and "maxSteps" not in spec["training"]


def _set_phase(crds, namespace, name, phase):
    crds.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "finetunejobs", name,
                                               {"status": {"phase": phase}})


def _patch_spec(crds, namespace, name, patch):
    return crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", name, {"spec": patch})


def test_training_spec_is_editable_while_pending_and_frozen_once_running(crds, namespace):
    create(crds, namespace, minimal_job("frozen"))
    _set_phase(crds, namespace, "frozen", "Validating")
    _patch_spec(crds, namespace, "frozen", {"training": {"learningRate": 0.0001}})

    _set_phase(crds, namespace, "frozen", "Running")
    with pytest.raises(ApiException) as err:
        _patch_spec(crds, namespace, "frozen", {"training": {"learningRate": 0.0003}})
    assert err.value.status == 422
    assert "spec is immutable once the job has started (phase Queued or later), except spec.lifecycle" in \
        json.loads(err.value.body)["message"]

    job = _patch_spec(crds, namespace, "frozen", {"lifecycle": {"suspend": True, "activeDeadlineSeconds": 600}})
    assert job["spec"]["lifecycle"]["suspend"] is True
    assert job["spec"]["training"]["learningRate"] == 0.0001


def test_cancel_cannot_be_undone(crds, namespace):
    create(crds, namespace, minimal_job("cancelled"))
    _patch_spec(crds, namespace, "cancelled", {"lifecycle": {"cancel": True}})
    with pytest.raises(ApiException) as err:
        _patch_spec(crds, namespace, "cancelled", {"lifecycle": {"cancel": False}})
    assert "spec.lifecycle.cancel cannot be set back to false" in json.loads(err.value.body)["message"]


def test_model_version_adapter_is_immutable(crds, namespace):
    mv = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": "bot-v1"},
          "spec": {"model": "support-bot", "version": "v1", "adapter": {"fromJob": {"name": "job-a"}}}}
    create(crds, namespace, mv)
    with pytest.raises(ApiException) as err:
        crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "bot-v1",
                                            {"spec": {"adapter": {"fromJob": {"name": "job-b"}}}})
    assert "spec.model, spec.version and spec.adapter are immutable" in json.loads(err.value.body)["message"]
    # The stage is what users change: that stays possible.
    patched = crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "bot-v1",
                                                  {"spec": {"stage": "archived"}})
    assert patched["spec"]["stage"] == "archived"


@pytest.mark.parametrize("field, words", [
    ("finetunejob.spec.dataset.validationSplit", "fraction of the training rows held out for"),
    ("finetunejob.spec.method.lora.r", "rank of the update matrices"),
    ("finetunejob.spec.lifecycle.cancel", "stops the job for good"),
    ("modelversion.spec.rollback.bakeWindowSeconds", "How long after promotion the query is watched"),
])
def test_kubectl_explain_prints_the_field_description(cluster, crds, field, words):
    result = kubectl(cluster, "explain", field)
    assert result.returncode == 0, result.stderr
    assert words in " ".join(result.stdout.split())


def test_kubectl_get_shows_printer_columns_and_the_finetune_category(cluster, crds, namespace):
    create(crds, namespace, minimal_job("shown"))
    crds.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "finetunejobs", "shown", {"status": {
        "phase": "Running", "progress": {"display": "40/100", "trainLoss": 1.25, "step": 40, "totalSteps": 100}}})
    create(crds, namespace, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": "shown-v1"},
                             "spec": {"model": "support-bot", "version": "v1", "adapter": {"fromJob": {"name": "shown"}}}})

    jobs = kubectl(cluster, "get", "finetunejobs", "-n", namespace).stdout.splitlines()
    assert jobs[0].split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "MODEL", "METHOD", "AGE"]
    assert jobs[1].split()[:6] == ["shown", "Running", "40/100", "1.25", "smollm2-135m-instruct", "lora"]
    versions = kubectl(cluster, "get", "mv", "-n", namespace).stdout.splitlines()
    assert versions[0].split() == ["NAME", "MODEL", "VERSION", "STAGE", "PHASE", "AGE"]
    assert versions[1].split()[:4] == ["shown-v1", "support-bot", "v1", "candidate"]
    both = kubectl(cluster, "get", "finetune", "-n", namespace).stdout
    assert "finetunejob.finetune.fto.dev/shown" in both and "modelversion.finetune.fto.dev/shown-v1" in both
