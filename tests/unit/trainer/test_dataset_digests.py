"""Content-addressed dataset reads (source.py through reading.read_records): every object is hashed as
it is streamed, recorded with its size and VersionId, and checked against what validation recorded;
content that differs is DatasetChanged (exit 21, permanent), a validated VersionId is the one read."""
from __future__ import annotations

import hashlib
import io
import json

import pytest

from finetune_api import datasets, termination
from finetune_trainer import config, data
from finetune_trainer.outcomes import ExitCode, TrainerFailure
from finetune_trainer.reading import InputLimits, read_records
from finetune_trainer.report_types import DatasetReport

ROWS = b"".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}).encode() + b"\n" for i in range(5))
SHA = hashlib.sha256(ROWS).hexdigest()
URI = "s3://data/train.jsonl"


class FakeS3:
    """Versioned store: get_object returns the newest version, or the one asked for."""

    def __init__(self, objects: dict, versioned: bool = False):
        self.versions = {uri: [body] for uri, body in objects.items()}
        self.versioned, self.calls = versioned, []

    def put(self, uri: str, body: bytes) -> None:
        self.versions[uri].append(body)

    def get_object(self, Bucket, Key, **kw):  # noqa: N803
        self.calls.append(kw)
        bodies = self.versions[f"s3://{Bucket}/{Key}"]
        index = int(kw["VersionId"][1:]) if "VersionId" in kw else len(bodies) - 1
        body = bodies[index]
        doc = {"Body": io.BytesIO(body), "ContentLength": len(body), "ETag": '"etag-%d"' % index}
        if self.versioned:
            doc["VersionId"] = f"v{index}"
        return doc


def read(s3, uri=URI, field="spec.dataset.uri", validated=(), max_rows=None, fmt="jsonl"):
    report = DatasetReport()
    rows = list(read_records(s3, uri, fmt, max_rows, report, InputLimits(field=field, validated=tuple(validated))))
    return rows, report


def source(sha=SHA, role="train", uri=URI, version=None, size=len(ROWS)):
    return datasets.DatasetSource(role, uri, sha, size, version_id=version)


def test_reading_an_object_records_its_sha256_size_and_role():
    rows, report = read(FakeS3({URI: ROWS}))
    assert len(rows) == 5
    assert report.sources == [{"role": "train", "uri": URI, "sha256": SHA, "bytes": len(ROWS)}]
    assert report.source_etag == "etag-0"


@pytest.mark.parametrize("field, role", [("spec.dataset.uri", "train"), ("spec.dataset.validationUri", "validation"),
                                         ("spec.evaluation.regressionUri", "regression")])
def test_the_spec_field_names_the_role_of_the_object(field, role):
    _, report = read(FakeS3({URI: ROWS}), field=field)
    assert report.sources[0]["role"] == role


def test_a_max_rows_read_still_digests_the_whole_object():
    rows, report = read(FakeS3({URI: ROWS}), max_rows=2)
    assert len(rows) == 2 and report.sources[0]["sha256"] == SHA and report.sources[0]["bytes"] == len(ROWS)


def test_a_versioned_bucket_records_the_version_read():
    _, report = read(FakeS3({URI: ROWS}, versioned=True))
    assert report.sources[0]["versionId"] == "v0"


def test_the_same_content_as_validated_reads_without_complaint():
    rows, report = read(FakeS3({URI: ROWS}), validated=[source()])
    assert len(rows) == 5 and report.sources[0]["sha256"] == SHA


def test_content_changed_after_validation_is_dataset_changed_and_permanent():
    s3 = FakeS3({URI: ROWS})
    s3.put(URI, ROWS + b'{"prompt": "new", "completion": "row"}\n')
    with pytest.raises(TrainerFailure) as err:
        read(s3, validated=[source()])
    assert err.value.code == ExitCode.DATASET_CHANGED
    assert err.value.code not in termination.RETRYABLE
    msg = err.value.message
    assert msg.startswith(f"spec.dataset.uri {URI} changed after validation: sha256 {SHA} was validated")
    assert "re-run the job" in msg


def test_a_validated_version_is_the_one_read_even_after_an_overwrite():
    s3 = FakeS3({URI: ROWS}, versioned=True)
    s3.put(URI, b'{"prompt": "swapped", "completion": "in"}\n')
    rows, report = read(s3, validated=[source(version="v0")])
    assert s3.calls[-1] == {"VersionId": "v0"}
    assert len(rows) == 5 and report.sources[0] == {**source(version="v0").to_doc()}


def test_a_validated_version_whose_bytes_differ_is_still_refused():
    s3 = FakeS3({URI: ROWS}, versioned=True)
    with pytest.raises(TrainerFailure) as err:
        read(s3, validated=[source(sha="0" * 64, version="v0")])
    assert err.value.code == ExitCode.DATASET_CHANGED


def test_an_object_validation_did_not_check_for_a_checked_role_is_refused():
    other = "s3://data/other.jsonl"
    with pytest.raises(TrainerFailure) as err:
        read(FakeS3({other: ROWS}), uri=other, validated=[source()])
    assert err.value.code == ExitCode.DATASET_CHANGED and "not an object validation checked" in err.value.message


def test_a_role_validation_recorded_nothing_for_is_read_unchecked():
    val = "s3://data/val.jsonl"
    rows, _ = read(FakeS3({val: ROWS}), uri=val, field="spec.dataset.validationUri", validated=[source()])
    assert len(rows) == 5


def test_parquet_objects_are_digested_too():
    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.table({"prompt": ["q"], "completion": ["a"]}), buf)
    raw, uri = buf.getvalue(), "s3://data/train.parquet"
    _, report = read(FakeS3({uri: raw}), uri=uri, fmt="parquet")
    assert report.sources[0]["sha256"] == hashlib.sha256(raw).hexdigest()
    with pytest.raises(TrainerFailure) as err:
        read(FakeS3({uri: raw}), uri=uri, fmt="parquet", validated=[source(uri=uri, sha="1" * 64)])
    assert err.value.code == ExitCode.DATASET_CHANGED


SPEC = {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://models/smollm2/"},
        "dataset": {"uri": URI, "format": "promptCompletion"}, "output": {"uri": "s3://out/bot/"}}


def test_the_trainer_config_takes_the_validated_sources_from_the_env(monkeypatch):
    monkeypatch.setenv(datasets.ENV, datasets.encode([source()]))
    cfg = config.from_dict({"job": {"namespace": "n", "name": "bot", "uid": "u"}, "spec": SPEC})
    assert cfg.runtime.validated_datasets == (source(),)
    assert InputLimits.of(cfg, "spec.dataset.uri").validated == (source(),)


def test_a_malformed_env_is_an_invalid_config(monkeypatch):
    monkeypatch.setenv(datasets.ENV, '[{"role": "train", "uri": "s3://a/b", "sha256": "nothex", "bytes": 1}]')
    with pytest.raises(config.ConfigError, match=datasets.ENV):
        config.from_dict({"job": {"namespace": "n", "name": "bot", "uid": "u"}, "spec": SPEC})


class CharTokenizer:
    eos_token_id = 0
    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) % 250 + 1 for c in text]}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")


def test_the_training_loader_refuses_changed_data_before_any_step(monkeypatch):
    """data.load reads every object to its end (the check runs at EOF) before it returns, and training
    starts only after it returns: a changed object never reaches step 1."""
    s3 = FakeS3({URI: ROWS})
    s3.put(URI, ROWS.replace(b"a4", b"zz"))
    monkeypatch.setenv(datasets.ENV, datasets.encode([source()]))
    cfg = config.from_dict({"job": {"namespace": "n", "name": "bot", "uid": "u"}, "spec": SPEC})
    with pytest.raises(TrainerFailure) as err:
        data.load(cfg, s3, CharTokenizer())
    assert err.value.code == ExitCode.DATASET_CHANGED
