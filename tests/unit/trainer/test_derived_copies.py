"""Transformed copies (spec.dataSafety Redact/Drop/cleaning): written back in the dataset's own
format, uploaded with derivedFrom, and the one place that decides which object training reads."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from finetune_api import datasets
from finetune_trainer import config, data, derived

SPEC = {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://models/smollm2/"},
        "dataset": {"uri": "s3://data/train.jsonl", "format": "promptCompletion",
                    "validationUri": "s3://data/val.jsonl"},
        "evaluation": {"regressionUri": "s3://data/regression.jsonl"},
        "output": {"uri": "s3://out/bot/"}}
ORIGINAL = "a" * 64


def cfg_for(spec=None, **runtime):
    cfg = config.from_dict({"job": {"namespace": "n", "name": "bot", "uid": "u"}, "spec": spec or SPEC})
    return dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, **runtime)) if runtime else cfg


@pytest.mark.parametrize("fmt, fields, record", [
    ("promptCompletion", {}, {"prompt": "Mail <EMAIL_ADDRESS>", "completion": "ok"}),
    ("promptCompletion", {}, {"system": "Be brief.", "prompt": "Call <PHONE_NUMBER>", "completion": "done"}),
    ("promptCompletion", {"prompt": "q", "completion": "a"}, {"q": "hi", "a": "there"}),
    ("instruction", {}, {"instruction": "Summarise", "response": "Short."}),
    ("chat", {"messages": "conversation"},
     {"conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                       {"role": "user", "content": "again"}, {"role": "assistant", "content": "yo"}]}),
    ("text", {"text": "body"}, {"body": "a document with <EMAIL_ADDRESS>"}),
])
def test_a_copy_row_reads_back_as_the_same_messages_in_the_datasets_own_format(fmt, fields, record):
    merged = {**config.DEFAULT_FIELDS[fmt], **fields}
    if fmt == "text":
        row = {"text": record[merged["text"]]}
    else:
        row = {"messages": data.to_messages(record, fmt, merged, 1, [])}
    back = derived.to_record(row, fmt, merged)
    if fmt == "text":
        assert back == record
    else:
        assert data.to_messages(back, fmt, merged, 1, []) == row["messages"]


def copy_source(role: str, uri: str, original: str) -> datasets.DatasetSource:
    return datasets.DatasetSource(role, derived.copy_uri("s3://out/bot", role), "b" * 64, 10,
                                  derived_from=datasets.DerivedFrom(original, ORIGINAL))


@pytest.mark.parametrize("validated, train, validation", [
    ((), "s3://data/train.jsonl", "s3://data/val.jsonl"),
    ((datasets.DatasetSource("train", "s3://data/train.jsonl", ORIGINAL, 10),),
     "s3://data/train.jsonl", "s3://data/val.jsonl"),
    ((copy_source("train", "", "s3://data/train.jsonl"),), "s3://out/bot/dataset/train.jsonl", "s3://data/val.jsonl"),
    ((copy_source("validation", "", "s3://data/val.jsonl"),), "s3://data/train.jsonl",
     "s3://out/bot/dataset/validation.jsonl"),
    ((copy_source("train", "", "s3://data/other.jsonl"),), "s3://data/train.jsonl", "s3://data/val.jsonl"),
    ((copy_source("regression", "", "s3://data/regression.jsonl"),), "s3://data/train.jsonl", "s3://data/val.jsonl"),
])
def test_training_reads_the_validated_copy_for_a_role_and_the_original_otherwise(validated, train, validation):
    cfg = cfg_for(validated_datasets=validated)
    view = derived.training_config(cfg)
    assert (view.dataset["uri"], view.dataset["validationUri"]) == (train, validation)
    regression = any(s.role == "regression" for s in validated)
    assert view.spec["evaluation"]["regressionUri"] == (
        "s3://out/bot/dataset/regression.jsonl" if regression else "s3://data/regression.jsonl")
    assert cfg.dataset["uri"] == "s3://data/train.jsonl"  # the config itself is never changed


class FakeS3:
    def __init__(self):
        self.objects = {}

    def upload_file(self, path, bucket, key):
        with open(path, "rb") as f:
            self.objects[f"s3://{bucket}/{key}"] = f.read()


def test_upload_writes_the_copy_under_the_output_prefix_with_derived_from_the_original(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "mail <EMAIL_ADDRESS>"}, {"role": "assistant", "content": "ok"}]}]
    local = tmp_path / "safety-train.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s3 = FakeS3()
    sources = [{"role": "train", "uri": "s3://data/train.jsonl", "sha256": ORIGINAL, "bytes": 99},
               {"role": "regression", "uri": "s3://data/regression.jsonl", "sha256": "c" * 64, "bytes": 9}]
    spec = {**SPEC, "dataset": {**SPEC["dataset"], "fields": {"prompt": "question"}}}
    out = derived.upload_copies(s3, cfg_for(spec), {"train": local, "regression": local}, sources)
    body = s3.objects["s3://out/bot/dataset/train.jsonl"]
    assert json.loads(body) == {"question": "mail <EMAIL_ADDRESS>", "completion": "ok"}  # the dataset's own fields
    assert json.loads(s3.objects["s3://out/bot/dataset/regression.jsonl"])["prompt"] == "mail <EMAIL_ADDRESS>"
    assert out[1] == {"role": "train", "uri": "s3://out/bot/dataset/train.jsonl",
                      "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
                      "derivedFrom": {"uri": "s3://data/train.jsonl", "sha256": ORIGINAL}}
    assert out[0]["derivedFrom"] == {"uri": "s3://data/regression.jsonl", "sha256": "c" * 64}
    assert datasets.from_docs(out)  # valid Contract B sources


def test_a_copy_without_the_originals_digest_is_refused(tmp_path):
    local = tmp_path / "safety-train.jsonl"
    local.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n')
    with pytest.raises(RuntimeError, match="no digest was recorded"):
        derived.upload_copies(FakeS3(), cfg_for(), {"train": local}, [])


@pytest.mark.parametrize("spec_extra, url, expected", [
    ({}, None, None),
    ({"dataSafety": {}}, None, "Warn"),
    ({"dataSafety": {"moderation": {"endpoint": "guard", "action": "Fail"}}}, "http://127.0.0.1:9000", "Warn"),
])
def test_the_gate_config_is_the_defaulted_spec_with_the_operators_moderation_url(spec_extra, url, expected):
    cfg = cfg_for({**SPEC, **spec_extra})
    if url:
        cfg = dataclasses.replace(cfg, runtime=type("R", (), {"moderation_url": url})())
    got = derived.safety_config(cfg)
    if expected is None:
        assert got is None
        return
    assert got["pii"]["action"] == expected and got["leakage"] == {"action": "Fail", "threshold": 0.9}
    assert got["moderation"].get("url") == url


# --- the whole path: validate with the gate, upload the copy, train-time loading reads it -----------
EMAIL, AWS_KEY = "jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE"
TICKETS = "".join(json.dumps(r) + "\n" for r in [
    {"prompt": "My plug arrived broken.", "completion": "A replacement is on its way."},
    {"prompt": f"Send the invoice to {EMAIL} please.", "completion": "Sent."},
    {"prompt": f"Is aws_access_key_id = {AWS_KEY} safe in my script?", "completion": "Rotate it now."},
    {"prompt": "The app logs me out.", "completion": "Update to 4.2."},
]).encode()


class MemoryS3(FakeS3):
    def get_object(self, Bucket, Key, **_):  # noqa: N803 - boto3's argument names
        import io
        body = self.objects[f"s3://{Bucket}/{Key}"]
        return {"Body": io.BytesIO(body), "ContentLength": len(body), "ETag": '"e"'}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from finetune_trainer.basemodel import prepare_default_model
    return AutoTokenizer.from_pretrained(prepare_default_model())


def test_a_redacted_copy_is_what_training_loads_and_its_digest_is_checked(tmp_path, tokenizer):
    from finetune_trainer.safety.gate import Gate
    spec = {**SPEC, "dataset": {"uri": "s3://data/train.jsonl", "format": "promptCompletion"}, "evaluation": {},
            "dataSafety": {"pii": {"action": "Redact"}, "secrets": {"action": "Redact"}}}
    cfg = cfg_for(spec, work_dir=tmp_path)
    s3 = MemoryS3()
    s3.objects["s3://data/train.jsonl"] = TICKETS
    gate = Gate(derived.safety_config(cfg), tokenizer, work_dir=str(tmp_path))
    report = data.validate(cfg, s3, tokenizer, gate=gate)
    copies = derived.upload_copies(s3, cfg, gate.copy_paths(), report.sources)
    assert [c["uri"] for c in copies] == ["s3://out/bot/dataset/train.jsonl"]
    assert gate.report()["pii"]["lines"] == [2] and gate.report()["secrets"]["lines"] == [3]

    trainer_cfg = cfg_for(spec, work_dir=tmp_path / "train",
                          validated_datasets=datasets.from_docs(report.sources + copies))
    train, _, stats = data.load(derived.training_config(trainer_cfg), s3, tokenizer)
    text = "".join(tokenizer.decode(train[i].input_ids) for i in range(len(train)))
    assert len(train) == 4 and "<EMAIL_ADDRESS>" in text and EMAIL not in text and AWS_KEY not in text
    assert stats.sources[0]["sha256"] == copies[0]["sha256"]

    s3.objects["s3://out/bot/dataset/train.jsonl"] += b'{"prompt": "swapped", "completion": "in"}\n'
    with pytest.raises(Exception) as err:  # the copy changed after validation: DatasetChanged
        data.load(derived.training_config(trainer_cfg), s3, tokenizer)
    assert getattr(err.value, "reason", "") == "DatasetChanged"


@pytest.mark.parametrize("check", ["pii", "secrets", "specialTokens", "nearDuplicates", "leakage", "moderation"])
def test_the_crd_offers_exactly_the_actions_the_gate_takes_with_the_same_defaults(check):
    from finetune_api import finetunejob_crd
    from finetune_trainer.safety import gate
    action = finetunejob_crd.data_safety()["properties"][check]["properties"]["action"]
    assert sorted(action["enum"]) == sorted(gate.ACTIONS[check])
    assert action["default"] == gate.DEFAULT_ACTIONS[check]
    assert gate.settings(derived.safety_config(cfg_for({**SPEC, "dataSafety": {}})) or {}).actions[check] == (
        "Off" if check == "moderation" else action["default"])


@pytest.mark.parametrize("runtime, expected", [({}, None), ({"moderationUrl": "http://127.0.0.1:9000"}, "http://127.0.0.1:9000")])
def test_the_trainer_reads_the_moderation_url_the_operator_resolved(runtime, expected):
    from finetune_trainer import config as configmod
    doc = {"job": {"namespace": "n", "name": "j", "uid": "u"}, "runtime": runtime,
           "spec": {"baseModel": {"name": "m", "uri": "s3://models/m/"},
                    "dataset": {"uri": "s3://data/train.jsonl", "format": "text"}, "output": {"uri": "s3://out/j/"}}}
    assert configmod.from_dict(doc).runtime.moderation_url == expected
