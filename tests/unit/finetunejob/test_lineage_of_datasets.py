"""Contract B in the operator: the validate pod's datasetStats.sources are checked and recorded in
status before the trainer Job is built, the Job carries them as FTO_VALIDATED_DATASETS, and a finished
job's manifest sources become status.lineage.datasets of the FineTuneJob and of the ModelVersion."""
from __future__ import annotations

import json

import pytest

from finetune_api import datasets, manifest as manifestmod
from finetune_operator.builders import trainer_job
from finetune_operator.finetunejob import decide as D
from finetune_operator.modelversion import register
from finetune_operator.plugin import format as fmt

from ftj_fixtures import (NOW, SETTINGS, VALIDATED, Preflight, Verified, cond, ftj, iso, job, pod, snapshot,
                          termination)

SHA = "c" * 64
TRAIN = {"role": "train", "uri": "s3://data/train.jsonl", "sha256": SHA, "bytes": 120}
VAL = {"role": "validation", "uri": "s3://data/val.jsonl", "sha256": "d" * 64, "bytes": 40, "versionId": "v7"}
VALIDATING = cond("Validated", "False", "Validating")


def validate_pod_done(sources, status_sources=None):
    stats = {"rows": 4, "tokens": 90, "sources": sources}
    status = {"phase": "Validating", "conditions": [VALIDATING]}
    if status_sources is not None:
        status["datasetStats"] = {"rows": 4, "sources": status_sources}
    obj = ftj(status=status)
    msg = termination("Succeeded", datasetStats=stats)
    return D.decide(snapshot(obj, validate_pod=pod("Succeeded", msg), preflight=Preflight()), NOW)


def test_validated_sources_are_recorded_before_the_trainer_job_is_created():
    d = validate_pod_done([TRAIN, VAL])
    assert d.status["datasetStats"]["sources"] == [TRAIN, VAL]
    assert not any((a.body or {}).get("kind") == "Job" for a in d.actions)
    assert d.requeue == 1.0


def test_once_recorded_the_job_goes_on_to_training():
    d = validate_pod_done([TRAIN, VAL], status_sources=[TRAIN, VAL])
    assert d.status["datasetStats"]["sources"] == [TRAIN, VAL]
    assert d.status["phase"] != "Failed"
    assert next(c for c in d.status["conditions"] if c["type"] == "Validated")["status"] == "True"


def test_a_validate_pod_without_sources_goes_straight_on():
    d = validate_pod_done([])
    assert "sources" not in d.status["datasetStats"]
    assert next(c for c in d.status["conditions"] if c["type"] == "Validated")["status"] == "True"


@pytest.mark.parametrize("bad", [[{**TRAIN, "sha256": "x"}], [{**TRAIN, "role": "eval"}], "nope"])
def test_malformed_sources_from_the_validate_pod_fail_the_job(bad):
    d = validate_pod_done(bad)
    assert (d.status["phase"], d.status["reason"]) == ("Failed", D.REASON_BAD_SOURCES)
    assert "datasetStats" not in d.status or "sources" not in d.status["datasetStats"]


def env_of(body) -> dict:
    return {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_trainer_job_carries_the_recorded_sources_as_its_env():
    obj = ftj(status={"datasetStats": {"rows": 4, "sources": [TRAIN, VAL]}})
    env = env_of(trainer_job.trainer_job(obj, 1, SETTINGS, config_digest="sha256:" + "a" * 64))
    assert datasets.decode(env[datasets.ENV]) == datasets.from_docs([TRAIN, VAL])


def test_a_job_validated_without_sources_gets_no_env():
    env = env_of(trainer_job.trainer_job(ftj(status={"datasetStats": {"rows": 4}}), 1, SETTINGS))
    assert datasets.ENV not in env


MANIFEST = {"steps": 2, "dataset": {"uri": "s3://data/train.jsonl", "etag": "e1", "sources": [TRAIN, VAL]},
            "baseModel": {"name": "smol", "digest": "sha256:" + "b" * 64}, "configHash": "sha256:" + "f" * 64,
            "trainerImage": "t:1", "lora": {"r": 8}, "job": {"name": "bot"},
            "files": [{"name": "adapter/x", "sha256": "f" * 64, "size": 3}]}


def test_a_finished_job_records_every_dataset_sha256_in_its_lineage():
    obj = ftj(status={"phase": "Running", "reason": "Training", "attempts": 1, "trainerJob": "bot-train-1",
                      "startTime": iso(NOW - 60), "conditions": [VALIDATED]})
    result = termination("Succeeded", manifestUri="s3://out/bot/manifest.json", adapterUri="s3://out/bot/adapter")
    d = D.decide(snapshot(obj, job=job(conditions=[("Complete", "")], succeeded=1), pods=(pod("Succeeded", result),),
                          verified=Verified(adapter_uri="s3://out/bot/adapter", digest="sha256:ab",
                                            manifest=MANIFEST, files=1)), NOW)
    assert d.status["phase"] == "Succeeded"
    assert d.status["lineage"]["datasets"] == [TRAIN, VAL]
    assert d.status["lineage"]["datasetEtag"] == "e1"


@pytest.mark.parametrize("dataset, want", [
    ({"uri": "s3://data/train.jsonl", "etag": "e1"}, []),                       # an older trainer's manifest
    ({"sources": [TRAIN, {**VAL, "sha256": "NOT HEX"}]}, []),                  # never a malformed status patch
    ({"sources": [TRAIN]}, [TRAIN]),
])
def test_manifest_sources_are_checked_before_they_reach_status(dataset, want):
    assert manifestmod.dataset_sources({"dataset": dataset}) == want


def test_a_model_version_lineage_has_the_dataset_sources():
    facts = register.adapter_facts("s3://out/bot/manifest.json", "sha256:" + "0" * 64, MANIFEST, None)
    status = register.registered_status({"model": "bot", "version": "v1"}, facts, MANIFEST, MANIFEST["files"])
    assert status["lineage"]["datasets"] == [TRAIN, VAL]
    old = {**MANIFEST, "dataset": {"uri": "s3://data/train.jsonl", "etag": "e1"}}
    assert "datasets" not in register.registered_status({"model": "bot", "version": "v1"}, facts, old,
                                                        old["files"])["lineage"]


def test_describe_prints_each_dataset_object_with_its_digest():
    lines = fmt._dataset_pairs({"datasets": [TRAIN, VAL, {**TRAIN, "uri": "s3://out/bot/dataset/train.jsonl",
                                                           "derivedFrom": {"uri": TRAIN["uri"], "sha256": SHA}}]})
    assert lines[0] == ("Data train", f"s3://data/train.jsonl sha256:{SHA}")
    assert lines[1] == ("Data validation", f"s3://data/val.jsonl sha256:{'d' * 64} version v7")
    assert lines[2][1].endswith("(derived from s3://data/train.jsonl)")


def test_the_lineage_schema_accepts_what_is_recorded():
    from finetune_api import finetunejob_crd, modelversion_crd
    from finetune_api.structural import validate
    validate({"sources": [TRAIN, VAL]}, finetunejob_crd.status()["properties"]["datasetStats"], "status.datasetStats")
    validate({"datasets": [TRAIN, VAL]}, modelversion_crd.status()["properties"]["lineage"], "status.lineage")
    assert json.dumps(TRAIN)  # plain JSON
