"""What the trainer reads is bounded: S3 keys stay inside their prefix, dataset files and rows have size
caps that fail with the field and the limit, and an answerRegex match has a time bound."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from finetune_api import s3 as s3api
from finetune_trainer import config, data, evaluate, reading
from finetune_trainer.outcomes import ExitCode, TrainerFailure

ROOT = Path(__file__).resolve().parents[3]


# --- S3 keys ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri, words", [
    ("s3://bkt/out/../team-b/data.jsonl", "a '..' segment"),
    ("s3://bkt/..", "a '..' segment"),
    ("s3://bkt/out/./x", "a '.' segment"),
    ("s3://bkt//etc/passwd", "an empty segment"),
    ("s3://bkt/out//x", "an empty segment"),
    ("s3://bkt/out//", "an empty segment"),
])
def test_a_uri_whose_key_climbs_out_of_its_prefix_is_refused(uri, words):
    with pytest.raises(s3api.InvalidS3Uri, match=words):
        s3api.parse_uri(uri)


@pytest.mark.parametrize("uri, expected", [
    ("s3://bkt", ("bkt", "")),
    ("s3://bkt/", ("bkt", "")),
    ("s3://bkt/out/", ("bkt", "out/")),
    ("s3://bkt/out/v1..v2/train.jsonl", ("bkt", "out/v1..v2/train.jsonl")),  # '..' inside a name is a name
    ("s3://bkt/.hidden/x", ("bkt", ".hidden/x")),
])
def test_plain_keys_parse_as_before(uri, expected):
    assert s3api.parse_uri(uri) == expected


class Listing:
    """list_objects_v2 + download_file, as boto3 serves them, over planted keys."""

    def __init__(self, keys):
        self.keys, self.downloaded = keys, []

    def get_paginator(self, _name):
        keys = self.keys

        class Pages:
            def paginate(self, Bucket, Prefix):  # noqa: N803 - boto3's argument names
                return [{"Contents": [{"Key": k} for k in keys if k.startswith(Prefix)]}]
        return Pages()

    def download_file(self, bucket, key, target):
        self.downloaded.append(target)
        Path(target).write_bytes(b"x")


@pytest.mark.parametrize("planted", ["out/ckpt/../../../escape.txt", "out/ckpt//abs", "out/ckpt/a/./b"])
def test_a_planted_key_is_never_written_outside_the_download_folder(tmp_path, planted):
    s3 = Listing(["out/ckpt/ok.bin", planted])
    dest = tmp_path / "dest"
    with pytest.raises(s3api.InvalidS3Uri):
        s3api.download_prefix(s3, "s3://bkt/out/ckpt/", dest)
    assert all(Path(t).resolve().is_relative_to(dest.resolve()) for t in s3.downloaded)
    assert not (tmp_path.parent / "escape.txt").exists()


# --- dataset sizes ---------------------------------------------------------------------------------
class Body(io.BytesIO):
    def iter_chunks(self, size):
        return iter(lambda: self.read(min(size, 7)), b"")  # small chunks: rows span chunk boundaries


class OneObject:
    def __init__(self, raw: bytes, content_length=None):
        self.raw, self.length = raw, content_length

    def get_object(self, Bucket, Key):  # noqa: N803
        out = {"Body": Body(self.raw), "ETag": '"e"'}
        if self.length is not None:
            out["ContentLength"] = self.length
        return out


def records(raw: bytes, limits: reading.InputLimits, content_length=None, fmt="jsonl"):
    report = data.DatasetReport()
    rows = list(reading.read_records(OneObject(raw, content_length), "s3://bkt/train.jsonl", fmt, None, report, limits))
    return rows, report


@pytest.mark.parametrize("lines, max_row, expected", [
    ([b"ab", b"cd"], 10, [(1, b"ab", 0), (2, b"cd", 0)]),
    ([b"a" * 20, b"cd"], 10, [(1, None, 20), (2, b"cd", 0)]),
    ([b"", b"x"], 10, [(1, b"", 0), (2, b"x", 0)]),
    ([b"a" * 11], 10, [(1, None, 11)]),
    ([b"a" * 10], 10, [(1, b"a" * 10, 0)]),
])
def test_lines_over_the_row_cap_are_skipped_without_being_held(lines, max_row, expected):
    raw = b"\n".join(lines)
    chunks = [raw[i:i + 3] for i in range(0, len(raw), 3)]
    assert list(reading.bounded_lines(chunks, max_row, 1000)) == expected


def test_a_row_over_the_cap_is_reported_with_its_line_the_limit_and_the_field():
    raw = b'{"text": "ok"}\n{"text": "' + b"x" * 200 + b'"}\n{"text": "also ok"}\n'
    rows, report = records(raw, reading.InputLimits(max_file_bytes=10_000, max_row_bytes=100))
    assert [line for line, _ in rows] == [1, 3]
    assert report.errors == ["line 2: the row is 212 bytes, over the limit of 100 bytes per row (the trainer's "
                             "runtime.maxRowBytes) in spec.dataset.uri"]


@pytest.mark.parametrize("content_length", [None, 10])  # unknown, or a store that under-reports it
def test_a_file_over_the_cap_fails_the_job_while_it_is_read(content_length):
    raw = b'{"text": "row"}\n' * 100
    with pytest.raises(TrainerFailure) as failed:
        records(raw, reading.InputLimits(max_file_bytes=500, max_row_bytes=100, field="spec.dataset.validationUri"),
                content_length)
    assert failed.value.code == ExitCode.DATASET_INVALID
    assert "spec.dataset.validationUri s3://bkt/train.jsonl is more than" in str(failed.value)
    assert "over the limit of 500 bytes per file (the trainer's runtime.maxFileBytes)" in str(failed.value)


def test_a_file_the_store_says_is_too_big_is_not_read_at_all():
    with pytest.raises(TrainerFailure, match=r"spec.dataset.uri s3://bkt/train.jsonl is 5000000000 bytes, over the "
                                             r"limit of 1000 bytes per file"):
        records(b"", reading.InputLimits(max_file_bytes=1000), content_length=5_000_000_000)


def parquet_bytes(rows: list) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def test_parquet_rows_and_files_have_the_same_caps():
    raw = parquet_bytes([{"text": "ok"}, {"text": "y" * 500}])
    rows, report = records(raw, reading.InputLimits(max_file_bytes=100_000, max_row_bytes=100), fmt="parquet")
    assert rows == [(1, {"text": "ok"})] and report.errors[0].startswith("line 2: the row is 512 bytes, over the limit")
    with pytest.raises(TrainerFailure, match="over the limit of 100 bytes per file"):
        records(raw, reading.InputLimits(max_file_bytes=100, max_row_bytes=100), fmt="parquet")


JOB = {"job": {"namespace": "n", "name": "j", "uid": "u"},
       "spec": {"baseModel": {"name": "m", "uri": "s3://models/m/"},
                "dataset": {"uri": "s3://data/train.jsonl", "format": "text"}, "output": {"uri": "s3://out/j/"}}}


@pytest.mark.parametrize("runtime, env, expected", [
    ({}, {}, (2 * 1024 ** 3, 4 * 1024 ** 2, 1.0)),
    ({"maxFileBytes": 1000, "maxRowBytes": 10, "regexTimeoutSeconds": 0.5}, {}, (1000, 10, 0.5)),
    ({"maxFileBytes": 1000}, {"FTO_MAX_FILE_BYTES": "2000"}, (2000, 4 * 1024 ** 2, 1.0)),
])
def test_input_limits_are_trainer_config_with_defaults(monkeypatch, runtime, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rt = config.from_dict({**JOB, "runtime": runtime}).runtime
    assert (rt.max_file_bytes, rt.max_row_bytes, rt.regex_timeout_seconds) == expected


@pytest.mark.parametrize("runtime", [{"maxRowBytes": 0}, {"maxFileBytes": "lots"}, {"regexTimeoutSeconds": -1}])
def test_a_limit_that_is_not_a_positive_number_is_a_config_error(runtime):
    with pytest.raises(config.ConfigError, match="must be a positive number"):
        config.from_dict({**JOB, "runtime": runtime})


# --- answerRegex -----------------------------------------------------------------------------------
def test_an_invalid_answer_regex_fails_the_config_not_the_end_of_training():
    doc = json.loads(json.dumps(JOB))
    doc["spec"]["evaluation"] = {"answerRegex": "(unclosed"}
    with pytest.raises(config.ConfigError, match="spec.evaluation.answerRegex is not a valid regular expression"):
        config.from_dict(doc)


@pytest.mark.parametrize("pattern, text, expected", [
    (r"\{.*\}", "{\n}", True),
    (r"\{.*\}", "nope", False),
    (r"(a|aa)+$", "a" * 60 + "b", None),  # catastrophic backtracking: cut off, not hung
])
def test_a_regex_match_answers_or_times_out(pattern, text, expected):
    started = time.monotonic()
    assert evaluate.regex_fullmatch(evaluate.compile_answer_regex(pattern), text, timeout=0.2) is expected
    assert time.monotonic() - started < 2


# The evaluation's real code path (task_checks) with a model that always answers the same text:
# run in a child process so that, on a trainer without the time bound, the test fails at its
# deadline instead of hanging the suite.
TASK_CHECKS = textwrap.dedent('''
    import json, torch
    from finetune_trainer import evaluate

    class Tok:
        pad_token_id = 0
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1] * len(text)}
        def decode(self, ids, skip_special_tokens=True):
            return "a" * 60 + "b"

    class Model:
        def eval(self): pass
        def train(self): pass
        def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, pad_token_id):
            return torch.ones((1, input_ids.shape[1] + 3), dtype=torch.long)

    print(json.dumps(evaluate.task_checks(Model(), Tok(), [([1, 2], "ref")], "cpu", None, r"(a|aa)+$")))
''')


def test_a_catastrophic_answer_regex_does_not_hang_the_evaluation():
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", TASK_CHECKS], capture_output=True, text=True, timeout=30,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("task_checks with answerRegex (a|aa)+$ over a 61-character answer ran past 30 s")
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert scores["regex_match"] == 0 and scores["regex_timeouts"] == 1
    assert time.monotonic() - started < 30
