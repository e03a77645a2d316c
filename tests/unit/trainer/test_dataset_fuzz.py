"""Any bytes in, a clear answer out: thousands of mutated dataset files through the reader and the checker.

A seeded mutator starts from valid rows of every format and breaks them the ways real files break (byte
flips, truncation, invalid UTF-8, NULs, deep nesting, huge numbers, NaN, odd types in fields, compressed
blobs, other encodings, oversized rows, corrupt Parquet); Hypothesis adds arbitrary bytes and arbitrary
JSON values. Every file must end in a report or DatasetInvalid (never another exception), name a line or
the object, and finish inside a generous hang guard (2 s + 2 s per MB: it catches hangs, not speed).
Everything is seeded (derandomized Hypothesis, no example database) so a failure reproduces in CI.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import random
import signal
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_trainer import config, data
from finetune_trainer.outcomes import ExitCode, TrainerFailure

MODELS = Path.home() / ".cache" / "finetune-operator" / "models"
FORMATS = ("chat", "text", "promptCompletion", "instruction")
MAX_ROW = 20_000


# --- the system under test: config, S3 and a tokenizer with the interface data.py uses ------------------
class Body(io.BytesIO):
    def iter_chunks(self, size):
        return iter(lambda: self.read(min(size, 4096)), b"")


class OneObject:
    def __init__(self, raw: bytes):
        self.raw = raw

    def get_object(self, Bucket, Key, **_):  # noqa: N803 - boto3's argument names
        return {"Body": Body(self.raw), "ETag": '"e"', "ContentLength": len(self.raw)}


class ByteTokenizer:
    """One id per UTF-8 byte; like a real tokenizer it cannot encode a lone surrogate."""
    chat_template = None  # Encoder's plain "Role: content" rendering
    eos_token, eos_token_id, pad_token_id, is_fast = "</s>", 2, 0, False
    all_special_tokens = ["</s>"]
    special_tokens_map = {"eos_token": "</s>"}

    def _ids(self, text: str) -> list:
        return [b + 3 for b in text.encode("utf-8")]

    def __call__(self, text, add_special_tokens=False, **_):
        return {"input_ids": [self._ids(t) for t in text] if isinstance(text, list) else self._ids(text)}


class RealBPE(ByteTokenizer):
    """SmolLM2's own BPE (tokenizers' Rust backend, no transformers import), when the model is cached."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer
        self.backend = Tokenizer.from_file(str(path))

    def __call__(self, text, add_special_tokens=False, **_):
        if isinstance(text, list):
            return {"input_ids": [e.ids for e in self.backend.encode_batch(text, add_special_tokens=False)]}
        return {"input_ids": self.backend.encode(text, add_special_tokens=False).ids}


def job(fmt: str, uri: str, work: Path, schema: bool = False):
    dataset = {"uri": uri, "format": fmt, **({"completionJsonSchema": '{"type": "object"}'} if schema else {})}
    return config.from_dict({
        "job": {"namespace": "n", "name": "j", "uid": "u"},
        "spec": {"baseModel": {"name": "m", "uri": "s3://models/m/"}, "output": {"uri": "s3://out/j/"},
                 "dataset": dataset, "training": {"maxSeqLength": 256}},
        "runtime": {"maxFileBytes": 2_000_000, "maxRowBytes": MAX_ROW, "workDir": str(work)}})


class Hang(BaseException):
    """Not an Exception, so no handler in the code under test can swallow it."""


@contextlib.contextmanager
def hang_guard(nbytes: int):
    seconds = 2.0 + 2.0 * nbytes / 1e6

    def fire(*_):
        raise Hang(f"still running after {seconds:.1f} s on a {nbytes}-byte file")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(cfg, raw: bytes, tokenizer) -> str:
    """'report' or 'invalid'; any other outcome fails the test, with what it was."""
    validate = getattr(data, "validate", None)
    with hang_guard(len(raw)):
        try:
            s3 = OneObject(raw)
            report = validate(cfg, s3, tokenizer) if validate else data.load(cfg, s3, tokenizer)[2]
        except TrainerFailure as err:
            assert err.code == ExitCode.DATASET_INVALID, f"{err.reason}: {err.message}"
            assert "line " in err.message or "s3://" in err.message, err.message
            return "invalid"
    assert all("line " in e for e in report.errors), report.errors
    return "report"


# --- valid rows, and the ways files break -----------------------------------------------------------------
WORDS = ["hello", "the ticket", "é", "日本語", "😀", "a\u2028b", "tab\there", "{json}", "[1, 2]", '"quoted"',
         "back\\slash", "<|im_start|>", "\u200b", "\U0010fffd"]


def valid_row(rng: random.Random, fmt: str) -> dict:
    say = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))  # noqa: E731
    if fmt == "chat":
        turns = [{"role": "user", "content": say()}, {"role": "assistant", "content": say()}]
        return {"messages": ([{"role": "system", "content": say()}] if rng.random() < 0.3 else []) + turns}
    if fmt == "text":
        return {"text": say()}
    if fmt == "promptCompletion":
        return {"prompt": say(), "completion": say()}
    return {"instruction": say(), "input": say() if rng.random() < 0.5 else "", "response": say()}


def valid_file(rng: random.Random, fmt: str) -> tuple[list, bytes]:
    rows = [valid_row(rng, fmt) for _ in range(rng.randint(1, 6))]
    return rows, b"".join(json.dumps(r, ensure_ascii=rng.random() < 0.5).encode() + b"\n" for r in rows)


SNIPPETS = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x00", b"\r", b"\n",
            b'"', b"\\", b"{", b"[", b"]", b"}", b",", b":", b"\\ud800", b"\\udc00\\ud800", b"NaN", b"Infinity",
            b"-Infinity", b"1e999", b"-0", b"9" * 5000, b"\xef\xbb\xbf", b"\x1f\x8b", b"PAR1", b"\\u0000"]
ODD = [None, 0, -1, 1.5, 1e308, True, [], {}, [1, "a"], {"role": "user"}, "", " ", "\n", "x" * (MAX_ROW + 10),
       2 ** 70, [[[[]]]], "\ud800", "[" * 3000 + "]" * 3000, "9" * 5000, '{"a": NaN}', '{"a": [1, 2]}']


def deep(rng: random.Random) -> bytes:
    n = rng.choice([10, 63, 64, 65, 200, 5000])
    return (b"[" * n + b"]" * n) if rng.random() < 0.5 else (b'{"a":' * n + b"1" + b"}" * n)


def odd_types(rng: random.Random, rows: list, fmt: str) -> bytes:
    out = []
    for row in rows:
        row = json.loads(json.dumps(row))
        key = rng.choice(list(row))
        if fmt == "chat" and rng.random() < 0.6 and row["messages"]:
            msg = rng.choice(row["messages"])
            msg[rng.choice(["role", "content", "name"])] = rng.choice(ODD + ["tool", "assistant"])
        else:
            row[key] = rng.choice(ODD)
        out.append(json.dumps(row, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass"))
    return b"\n".join(out)


def zipped(raw: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train.jsonl", raw)
    return buf.getvalue()


def mutate(rng: random.Random, rows: list, raw: bytes, fmt: str) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "truncate", "insert", "deep", "odd", "compressed", "binary", "lines", "encoding",
                       "huge_row", "compressed_line"])
    pos = rng.randint(0, len(raw))
    if kind == "flip":
        b = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        return kind, bytes(b)
    if kind == "truncate":
        return kind, raw[:pos]
    if kind == "insert":
        return kind, raw[:pos] + rng.choice(SNIPPETS) + raw[pos:]
    if kind == "deep":
        inside = rng.random() < 0.5
        return kind, raw[:pos] + deep(rng) + raw[pos:] if inside else raw + b'{"text": ' + deep(rng) + b"}\n"
    if kind == "odd":
        return kind, odd_types(rng, rows, fmt)
    if kind == "compressed":
        return kind, rng.choice([gzip.compress, bz2.compress, lzma.compress, zipped,
                                 lambda r: b"\x28\xb5\x2f\xfd" + rng.randbytes(40)])(raw)
    if kind == "binary":
        return kind, rng.randbytes(rng.randint(1, 3000))
    if kind == "compressed_line":
        return kind, raw + gzip.compress(raw) + b"\n" + raw
    if kind == "lines":
        extra = [b"", b"   ", b"{}", b"[]", b"1", b'"s"', b"null", b"true", b"\r", b"[{}]"]
        lines = raw.split(b"\n") + [rng.choice(extra) for _ in range(rng.randint(1, 3))]
        rng.shuffle(lines)
        return kind, b"\n".join(lines)
    if kind == "encoding":
        encoding = rng.choice(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"])
        return kind, raw.decode("utf-8", "replace").encode(encoding, "replace")
    return kind, raw[:pos] + b'{"text": "' + b"y" * (MAX_ROW + rng.randint(0, 5000)) + b'"}\n' + raw[pos:]


# --- the tests --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cfgs(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    cfgs = {(fmt, ext): job(fmt, f"s3://bkt/train.{ext}", work) for fmt in FORMATS for ext in ("jsonl", "parquet")}
    cfgs[("promptCompletion", "schema")] = job("promptCompletion", "s3://bkt/train.jsonl", work, schema=True)
    return cfgs


def test_mutated_jsonl_files_end_in_a_report_or_dataset_invalid(cfgs):
    rng, outcomes = random.Random(20261201), {"report": 0, "invalid": 0}
    tok = ByteTokenizer()
    for case in range(2500):
        fmt = FORMATS[case % len(FORMATS)]
        rows, raw = valid_file(rng, fmt)
        kinds = []
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):  # 0: a valid file must pass
            kind, raw = mutate(rng, rows, raw, fmt)
            kinds.append(kind)
        try:
            schema = fmt == "promptCompletion" and case % 8 == 2  # completionJsonSchema: completions parsed too
            outcomes[check(cfgs[(fmt, "schema" if schema else "jsonl")], raw, tok)] += 1
        except (Exception, Hang) as err:  # noqa: BLE001 - say which file broke it
            pytest.fail(f"case {case} ({fmt}, {'+'.join(kinds)}): {type(err).__name__}: {err}\nfile: {raw[:300]!r}")
    assert outcomes["report"] > 300 and outcomes["invalid"] > 1000, outcomes  # both answers were exercised


def parquet_of(rows: list) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def broken_parquet(rng: random.Random, rows: list, fmt: str) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "truncate", "junk", "zeros", "not_parquet", "empty", "odd_columns", "valid"])
    raw = parquet_of(rows)
    if kind == "flip":
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return kind, bytes(b)
    if kind == "truncate":
        return kind, raw[:rng.randint(0, len(raw) - 1)]
    if kind == "junk":
        pos = rng.randint(0, len(raw))
        return kind, raw[:pos] + rng.randbytes(rng.randint(1, 64)) + raw[pos:]
    if kind == "zeros":
        pos = rng.randint(0, len(raw) - 1)
        return kind, raw[:pos] + b"\x00" * min(32, len(raw) - pos) + raw[pos + 32:]
    if kind == "not_parquet":
        return kind, rng.choice([valid_file(rng, fmt)[1], gzip.compress(b"x"), rng.randbytes(100)])
    if kind == "empty":
        return kind, rng.choice([b"", parquet_of([])]) if rng.random() < 0.5 else b""
    if kind == "odd_columns":
        key = rng.choice(list(rows[0]))
        value = rng.choice([None, 1, 1.5, True, [1, 2], {"x": 1}, b"\xff\xfe", "", [{"role": 1}]])
        return kind, parquet_of([{**r, key: value} for r in rows])
    return kind, raw


def test_corrupt_parquet_files_end_in_a_report_or_dataset_invalid(cfgs):
    rng, outcomes = random.Random(7), {"report": 0, "invalid": 0}
    tok = ByteTokenizer()
    for case in range(400):
        fmt = FORMATS[case % len(FORMATS)]
        rows = [valid_row(rng, fmt) for _ in range(rng.randint(1, 4))]
        kind, raw = broken_parquet(rng, rows, fmt)
        try:
            outcomes[check(cfgs[(fmt, "parquet")], raw, tok)] += 1
        except (Exception, Hang) as err:  # noqa: BLE001
            pytest.fail(f"case {case} ({fmt}, {kind}): {type(err).__name__}: {err}\nfile: {raw[:200]!r}")
    assert outcomes["report"] > 20 and outcomes["invalid"] > 100, outcomes


def fuzz(examples: int):
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@fuzz(400)
@given(raw=st.binary(max_size=3000))
def test_arbitrary_bytes_end_in_a_report_or_dataset_invalid(cfgs, raw):
    check(cfgs[("chat", "jsonl")], raw, ByteTokenizer())


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
ROWS = st.lists(st.fixed_dictionaries({"messages": JSON}) | st.fixed_dictionaries({"text": JSON}) | JSON,
                min_size=1, max_size=5)


@fuzz(150)
@given(rows=ROWS, fmt=st.sampled_from(FORMATS))
def test_arbitrary_json_values_end_in_a_report_or_dataset_invalid(cfgs, rows, fmt):
    raw = b"\n".join(json.dumps(r).encode("utf-8", "surrogatepass") for r in rows)
    check(cfgs[(fmt, "jsonl")], raw, ByteTokenizer())


def test_mutated_files_through_the_real_smollm2_tokenizer(cfgs):
    found = sorted(MODELS.glob("smollm2-*/tokenizer.json"))
    if not found:
        pytest.skip("the default model is not converted on this machine (finetune-trainer prepare-base-model)")
    tok, rng = RealBPE(found[0]), random.Random(99)
    for case in range(300):
        fmt = FORMATS[case % len(FORMATS)]
        rows, raw = valid_file(rng, fmt)
        kind, raw = mutate(rng, rows, raw, fmt)
        try:
            check(cfgs[(fmt, "jsonl")], raw, tok)
        except (Exception, Hang) as err:  # noqa: BLE001
            pytest.fail(f"case {case} ({fmt}, {kind}): {type(err).__name__}: {err}\nfile: {raw[:300]!r}")
