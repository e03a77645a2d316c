"""Malformed dataset files end in DatasetInvalid (exit 11, permanent) naming the line and what is wrong, never
in a crash reported as TrainerError (exit 1, retried): one test per way a file was found to break."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile

import pytest

from finetune_trainer import __main__ as entry
from finetune_trainer import data, parsing, reading
from finetune_trainer.outcomes import ExitCode, TrainerFailure
from finetune_trainer.report_types import DatasetReport

LIMITS = reading.InputLimits(max_file_bytes=10_000_000, max_row_bytes=1_000_000)
OK = b'{"text": "ok"}\n'


class Body(io.BytesIO):
    def iter_chunks(self, size):
        return iter(lambda: self.read(min(size, 5)), b"")  # rows and signatures span chunk boundaries


class OneObject:
    def __init__(self, raw: bytes):
        self.raw = raw

    def get_object(self, Bucket, Key, **_):  # noqa: N803 - boto3's argument names
        return {"Body": Body(self.raw), "ETag": '"e"', "ContentLength": len(self.raw)}


def read(raw: bytes, fmt: str = "jsonl", uri: str = "s3://bkt/train.jsonl"):
    report = DatasetReport()
    rows = list(reading.read_records(OneObject(raw), uri, fmt, None, report, LIMITS))
    return rows, report.errors


def refused(raw: bytes, fmt: str = "jsonl", uri: str = "s3://bkt/train.jsonl") -> str:
    with pytest.raises(TrainerFailure) as failed:
        read(raw, fmt, uri)
    assert failed.value.code == ExitCode.DATASET_INVALID
    return failed.value.message


# --- the three findings of issue 14 -----------------------------------------------------------------------
def test_invalid_utf8_is_reported_with_its_line_and_byte_offsets_not_a_crash():
    rows, errors = read(OK + b'{"text": "caf\xe9"}\n' + OK)
    assert [line for line, _ in rows] == [1, 3]
    assert errors == ["line 2: not valid UTF-8 (byte 0xe9 at offset 13 in the line, 28 in the file: "
                      "invalid continuation byte)"]


def test_binary_content_in_a_jsonl_is_reported_per_line():
    rows, errors = read(OK + b'{"text": "a\x00\x01\x02"}\n' + b"\x89\xfe\x00\x00garbage\n")
    assert [line for line, _ in rows] == [1]
    assert errors == ["line 2: a NUL byte at offset 11 in the line (26 in the file): binary data in a text file?",
                      "line 3: a NUL byte at offset 2 in the line (34 in the file): binary data in a text file?"]


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_nesting_deeper_than_the_limit_is_reported_not_a_recursion_error(depth):
    deep = b'{"text": "x", "meta": ' + b"[" * depth + b"]" * depth + b"}\n"
    rows, errors = read(OK + deep)
    assert [line for line, _ in rows] == [1]
    assert errors == [f"line 2: arrays/objects nested {depth + 1} deep, over the limit of {parsing.MAX_DEPTH}"]


# --- whole files that are not JSON Lines --------------------------------------------------------------------
def _zip(raw: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train.jsonl", raw)
    return buf.getvalue()


@pytest.mark.parametrize("pack, words", [
    (gzip.compress, "looks like gzip-compressed data, not JSON Lines: decompress it (gunzip)"),
    (bz2.compress, "looks like bzip2-compressed data"),
    (lzma.compress, "looks like xz-compressed data"),
    (lambda raw: b"\x28\xb5\x2f\xfd" + raw, "looks like zstd-compressed data"),
    (_zip, "looks like a zip archive, not JSON Lines: unzip it"),
    (lambda raw: b"PAR1" + raw, "looks like a Parquet file, not JSON Lines: name it .parquet or set "
                                "spec.dataset.fileFormat: parquet"),
    (lambda raw: raw.decode().encode("utf-16"), "looks like UTF-16 (or UTF-32) text"),
])
def test_a_compressed_or_binary_file_given_as_jsonl_is_named_for_what_it_looks_like(pack, words):
    message = refused(pack(OK * 3))
    assert message.startswith("spec.dataset.uri s3://bkt/train.jsonl ") and words in message


@pytest.mark.parametrize("raw", [b"", b"\n\n  \n", b"\r\n"])
def test_an_empty_file_has_no_rows(raw):
    assert refused(raw) == "spec.dataset.uri s3://bkt/train.jsonl has no rows (the object is empty or blank)"


def test_a_utf8_byte_order_mark_is_accepted():
    assert read(b"\xef\xbb\xbf" + OK)[0] == [(1, {"text": "ok"})]


# --- rows that are not a non-empty JSON object ---------------------------------------------------------------
@pytest.mark.parametrize("row, problem", [
    (b"{}", "the row is an empty JSON object {}"),
    (b"[1, 2]", "a row must be a JSON object (got an array)"),
    (b'"text"', "a row must be a JSON object (got a string)"),
    (b"42", "a row must be a JSON object (got a number)"),
    (b"null", "a row must be a JSON object (got null)"),
    (b'{"text": NaN}', "not valid JSON (NaN is not allowed in JSON: write null or a string)"),
    (b'{"score": -Infinity}', "not valid JSON (-Infinity is not allowed in JSON: write null or a string)"),
    (b'{"n": ' + b"9" * 5000 + b"}",
     "not valid JSON (Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits)"),
    (b'{"text": "\\ud800 alone"}', "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), not Unicode"),
    (b'{"text": "unterminated', "not valid JSON (Unterminated string starting at column 10)"),
    (b'{"text": "ok"', "not valid JSON (Expecting ',' delimiter at column 14)"),
])
def test_a_row_that_is_not_a_non_empty_json_object_is_reported_with_its_line(row, problem):
    rows, errors = read(OK + row + b"\n")
    assert rows == [(1, {"text": "ok"})]
    assert errors == [f"line 2: {problem}"]


@pytest.mark.parametrize("row, record", [
    (b'{"text": "\\ud83d\\ude00"}', {"text": "\U0001f600"}),  # a surrogate pair is one character
    (b'{"text": "x", "meta": ' + b"[" * 63 + b"]" * 63 + b"}", None),  # 64 deep: at the limit
    (b'{"text": "' + b"[" * 500 + b'"}', {"text": "[" * 500}),  # brackets inside strings are text
    (b'{"text": "\\"[[[[", "m": []}', {"text": '"[[[[', "m": []}),
    (b'{"n": 1e999, "text": "big"}', {"n": float("inf"), "text": "big"}),  # a number, if one out of range
])
def test_rows_near_the_limits_are_read(row, record):
    rows, errors = read(row + b"\n")
    assert errors == [] and len(rows) == 1
    assert record is None or rows[0][1] == record


@pytest.mark.parametrize("raw, depth", [
    (b"[]", 0), (b"[" * 65 + b"]" * 65, 65), (b'"' + b"[" * 100 + b'"', 0), (b'["\\"' + b"[" * 100 + b'"]', 0),
    (b'"\\' + b"[" * 100, 0),  # an unterminated string runs to the end of the line
    (b"{" * 70, 70), (b'{"a":' * 80 + b"1" + b"}" * 80, 80),
])
def test_nesting_depth_counts_brackets_outside_strings(raw, depth):
    assert parsing.nesting_depth(raw, limit=64) == depth


def test_nesting_depth_is_linear_on_escaped_quotes():
    import time
    started = time.monotonic()
    parsing.nesting_depth(b'"' + b'\\"[' * 300_000, limit=64)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("completion, problem", [
    ("[" * 5000 + "]" * 5000, "completion nests arrays/objects 5000 deep, over the limit of 64"),
    ("9" * 5000, "completion is not valid JSON (Exceeds the limit (4300 digits) for integer string conversion: "
                 "value has 5000 digits)"),
    ("{oops", "completion is not valid JSON (Expecting property name enclosed in double quotes)"),
])
def test_a_completion_checked_against_a_json_schema_is_parsed_with_the_same_limits(completion, problem):
    import jsonschema
    problems: list = []
    data.check_json_completion(completion, jsonschema.Draft202012Validator({"type": "object"}), 4, problems)
    assert problems == [f"line 4: {problem}"]


# --- Parquet -----------------------------------------------------------------------------------------------
def parquet_bytes(rows: list) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


@pytest.mark.parametrize("raw, words", [
    (OK * 3, "is not a readable Parquet file"),
    (gzip.compress(b"x"), "is not a readable Parquet file (it looks like gzip-compressed data)"),
    (b"", "is not a readable Parquet file"),
    (parquet_bytes([{"text": "ok"}])[:-20], "is not a readable Parquet file"),
])
def test_a_file_that_is_not_parquet_is_dataset_invalid_naming_the_object(raw, words):
    message = refused(raw, "parquet", "s3://bkt/train.parquet")
    assert message.startswith("spec.dataset.uri s3://bkt/train.parquet ") and words in message


def test_an_empty_parquet_file_has_no_rows():
    assert "has no rows" in refused(parquet_bytes([]), "parquet", "s3://bkt/train.parquet")


# --- the entrypoint's last line of defence -------------------------------------------------------------------
def _raised_in(module_file: str, err: BaseException) -> BaseException:
    code = compile("def boom(err):\n    raise err\n", module_file, "exec")
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - a frame whose file is module_file, as a real raise there would have
    try:
        scope["boom"](err)
    except BaseException as raised:  # noqa: BLE001
        return raised
    raise AssertionError("not raised")


@pytest.mark.parametrize("where, err, dataset", [
    ("finetune_trainer/reading.py", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), True),
    ("finetune_trainer/data.py", UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
    ("finetune_trainer/parsing.py", RecursionError("maximum recursion depth exceeded"), True),
    ("finetune_trainer/train.py", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), False),
    ("finetune_trainer/model.py", RecursionError("maximum recursion depth exceeded"), False),
    ("finetune_trainer/data.py", KeyError("a bug"), False),
    ("somewhere_else/data.py", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), False),
])
def test_only_decoding_errors_from_the_data_modules_count_as_the_datasets_fault(where, err, dataset):
    assert entry._dataset_decoding_problem(_raised_in(f"/src/{where}", err)) is dataset


# --- crash paths the fuzz test found after parsing -----------------------------------------------------------
class NoTemplate:
    """A tokenizer without a chat template (a base model): one id per character."""
    chat_template, eos_token, eos_token_id, is_fast = None, "</s>", 2, False

    def __call__(self, text, add_special_tokens=False, **_):
        ids = lambda t: [ord(c) for c in t]  # noqa: E731
        return {"input_ids": [ids(t) for t in text] if isinstance(text, list) else ids(text)}


def test_a_conversation_with_two_answers_encodes_without_a_chat_template():
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "B"},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "D"}]
    ids, labels = data.Encoder(NoTemplate(), 512).encode_chat(messages)
    text = "".join(map(chr, ids))
    assert text == "User: a\nAssistant: B</s>\nUser: c\nAssistant: D</s>\n"
    assert "".join(chr(x) for x in labels if x != data.IGNORE) == "B</s>\nD</s>\n"


@pytest.mark.parametrize("message", [{"role": ["user"], "content": "x"}, {"role": {"a": 1}, "content": "x"},
                                     {"role": "user", "content": ["x"]}, "user: x", None])
def test_a_message_with_an_odd_type_is_a_row_problem_not_a_type_error(message):
    problems: list = []
    assert data.to_messages({"messages": [message]}, "chat", {"messages": "messages"}, 3, problems) is None
    assert problems == ["line 3: message 0 must be {role: system|user|assistant, content: string}"]
