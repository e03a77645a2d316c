import dataclasses

import pytest


from finetune_operator.modelversion import naming, record, register

DIGEST = "sha256:0123456789abcdef" + "0" * 48


def test_served_name_is_content_addressed():
    assert naming.served_name("bot", "v2", DIGEST) == "bot--v2-01234567"



@pytest.mark.parametrize("behaviour, namespace, model, name", [
    ("the record is named by namespace and model", "team-a", "bot", "fto-record-team-a.bot"),
    ("the dot keeps namespaces apart", "a", "b-c", "fto-record-a.b-c"),
    ("the other split of the same letters", "a-b", "c", "fto-record-a-b.c"),
])
def test_record_names_are_deterministic_and_unambiguous(behaviour, namespace, model, name):
    assert record.record_name(namespace, model) == name


def test_a_record_name_too_long_for_a_configmap_is_cut_and_kept_unique():
    a, b = record.record_name("n" * 200, "m" * 60), record.record_name("n" * 200, "m" * 59 + "x")
    assert len(a) <= 253 and len(b) <= 253 and a != b and a == record.record_name("n" * 200, "m" * 60)


@pytest.mark.parametrize("behaviour, configured, env, home", [
    ("the configured namespace wins", "fto-system", {"POD_NAMESPACE": "other"}, "fto-system"),
    ("else $FTO_RECORD_NAMESPACE", "", {"FTO_RECORD_NAMESPACE": "records", "POD_NAMESPACE": "other"}, "records"),
    ("else the pod's namespace", "", {"POD_NAMESPACE": "fto"}, "fto"),
    ("else default", "", {}, "default"),
])
def test_records_live_in_the_operators_namespace(monkeypatch, behaviour, configured, env, home):
    for key in ("FTO_RECORD_NAMESPACE", "POD_NAMESPACE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(record, "_home", "")
    record.configure(configured)
    assert record.home() == home
    assert record.record_ref("team-a", "bot") == f"{home}/fto-record-team-a.bot"


def test_from_job_states():
    assert register.from_job(None, "j").reason == "JobNotFound"
    assert register.from_job({"status": {"phase": "Running"}}, "j").state == "wait"
    failed = register.from_job({"status": {"phase": "Failed", "reason": "OOM"}}, "j")
    assert failed.state == "failed" and "OOM" in failed.message
    ready = register.from_job({"status": {"phase": "Succeeded", "result": {
        "manifestUri": "s3://b/o/manifest.json", "adapterDigest": DIGEST, "adapterUri": "s3://b/o/adapter"}}}, "j")
    assert (ready.state, ready.manifest_uri, ready.digest) == ("ready", "s3://b/o/manifest.json", DIGEST)
    assert register.from_job({"status": {"phase": "Succeeded", "result": {}}}, "j").reason == "ManifestInvalid"


def test_manifest_candidates_inside_then_beside():
    assert register.manifest_candidates("s3://b/models/v3/adapter/") == [
        "s3://b/models/v3/adapter/manifest.json", "s3://b/models/v3/manifest.json"]
    assert register.manifest_candidates("s3://b/") == ["s3://b/manifest.json"]


def test_adapter_files_live_in_the_adapter_folder_beside_the_manifest():
    assert register.adapter_prefix("s3://b/o/manifest.json") == "s3://b/o/adapter/"


def test_registered_status_and_back():
    manifest = {"lora": {"r": 8, "targetModules": ["q_proj", "v_proj"]},
                "baseModel": {"name": "smol", "digest": "sha256:" + "b" * 64},
                "dataset": {"uri": "s3://d/t.jsonl", "etag": "e1"}, "configHash": "sha256:c", "trainerImage": "t:1",
                "metrics": {"eval_loss": 1.5, "flag": True}, "job": {"name": "job1"},
                "files": [{"name": "adapter/x", "sha256": "f" * 64, "size": 3}]}
    spec = {"model": "bot", "version": "v2"}
    facts = register.adapter_facts("s3://b/o/manifest.json", DIGEST, manifest, None)
    assert (facts.rank, facts.target_modules, facts.base_digest) == (8, ("q_proj", "v_proj"), "sha256:" + "b" * 64)
    status = register.registered_status(spec, facts, manifest, manifest["files"])
    assert status["servedName"] == "bot--v2-01234567"
    assert status["lineage"] == {"jobName": "job1", "datasetUri": "s3://d/t.jsonl", "datasetEtag": "e1",
                                 "baseModelDigest": "sha256:" + "b" * 64, "configHash": "sha256:c",
                                 "trainerImage": "t:1", "metrics": {"eval_loss": 1.5}}
    assert status["adapter"]["files"] == [{"name": "adapter/x", "sha256": "f" * 64, "size": 3}]
    again = register.adapter_from_status(status, spec)
    assert again == dataclasses.replace(facts, base_name="")  # the name is display only
    # spec.baseModel.digest wins over the manifest's.
    assert register.adapter_from_status(status, {"baseModel": {"name": "x", "digest": "sha256:" + "d" * 64}}
                                        ).base_digest == "sha256:" + "d" * 64


def test_record_roundtrip_and_production_moves():
    rec = record.Record()
    rec.set_production("bot-v1", "v1", "bot--v1-11111111", "t1")
    rec.set_production("bot-v2", "v2", "bot--v2-22222222", "t2")
    assert (rec.previous, rec.previous_served_name) == ("bot-v1", "bot--v1-11111111")
    rec.decide("bot-v2", 3, record.WON, "t2")
    again = record.Record.from_configmap({"metadata": {"resourceVersion": "7"}, "data": rec.data()})
    assert again.production == "bot-v2" and again.decision("bot-v2", 3)["result"] == "won"
    assert again.decision("bot-v2", 4) is None and again.resource_version == "7"
    again.restore_previous("t3")
    assert (again.production, again.served_name, again.previous) == ("bot-v1", "bot--v1-11111111", "")


def test_rolling_back_the_first_production_version_puts_the_alias_on_the_base_model():
    rec = record.Record()
    rec.set_production("bot-v1", "v1", "bot--v1-11111111", "t1")
    assert not rec.on_base()
    rec.restore_previous("t2", base_served="smollm2-135m-instruct")
    assert (rec.production, rec.served_name, rec.on_base()) == ("", "smollm2-135m-instruct", True)
    rec.set_production("bot-v2", "v2", "bot--v2-22222222", "t3")  # promoted over the base: no previous version
    assert (rec.previous, rec.on_base()) == ("", False)


def test_first_in_line_is_oldest_then_name():
    a = record.Contender("b-v3", "2026-01-01T00:00:01Z")
    b = record.Contender("a-v2", "2026-01-01T00:00:01Z")
    c = record.Contender("z-v1", "2026-01-01T00:00:00Z")
    assert record.first_in_line(a, [b]).name == "a-v2"
    assert record.first_in_line(a, [b, c]).name == "z-v1"
