"""Reading, checking and tokenising the dataset.

Rows stream from S3 (JSONL line by line; Parquet as one object), each checked against the
declared format and field mapping. Problems are collected with their line numbers (the first
MAX_REPORTED are reported) so a bad dataset fails before any GPU is used. Rows become token
ids with labels: prompt tokens are masked (-100) so the loss is on completions only, using the
model's own chat template for chat, instruction and prompt/completion data.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import random
from typing import Iterator, Optional

from . import s3 as s3mod
from .outcomes import ExitCode, TrainerFailure

MAX_REPORTED = 20
IGNORE = -100
ROLES = {"system", "user", "assistant"}


@dataclasses.dataclass
class Example:
    input_ids: list
    labels: list
    line: int

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclasses.dataclass
class DatasetReport:
    rows: int = 0
    validation_rows: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    rows_over_max_seq_length: int = 0
    duplicate_rows: int = 0
    empty_completions: int = 0
    skipped_rows: int = 0
    error_count: int = 0
    errors: list = dataclasses.field(default_factory=list)
    source_etag: str = ""

    def add_error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(message)

    def summary(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "errors"}


# --- reading ----------------------------------------------------------------------------------
def file_format(uri: str, declared: str) -> str:
    if declared != "auto":
        return declared
    return "parquet" if uri.lower().endswith((".parquet", ".pq")) else "jsonl"


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """How much of a dataset file the trainer reads: the file (bytes as stored) and one row. field names
    the spec field the file came from, so the error says what to fix."""
    max_file_bytes: int = 2 * 1024 ** 3
    max_row_bytes: int = 4 * 1024 ** 2
    field: str = "spec.dataset.uri"

    @classmethod
    def of(cls, cfg, field: str) -> "InputLimits":
        rt = cfg.runtime
        return cls(rt.max_file_bytes, rt.max_row_bytes, field)

    def file_too_big(self, uri: str, size: int, read_so_far: bool = False) -> TrainerFailure:
        what = f"more than {size} bytes" if read_so_far else f"{size} bytes"
        return TrainerFailure(ExitCode.DATASET_INVALID,
                              f"{self.field} {uri} is {what}, over the limit of {self.max_file_bytes} bytes per file "
                              "(the trainer's runtime.maxFileBytes): split it into smaller files or ask the platform team")

    def row_too_big(self, line: int, size: int) -> str:
        return (f"line {line}: the row is {size} bytes, over the limit of {self.max_row_bytes} bytes per row "
                f"(the trainer's runtime.maxRowBytes) in {self.field}")


def read_records(s3, uri: str, fmt: str, max_rows: Optional[int], report: DatasetReport,
                 limits: InputLimits = InputLimits()) -> Iterator[tuple[int, object]]:
    """(line number, parsed record) per row; unparseable or oversized rows are reported, not yielded.
    A file over limits.max_file_bytes fails the job (DatasetInvalid) before or while it is read."""
    bucket, key = s3mod.parse_uri(uri)
    with s3mod.errors(f"reading {uri}"):
        obj = s3.get_object(Bucket=bucket, Key=key)
    report.source_etag = obj.get("ETag", "").strip('"')
    size = obj.get("ContentLength")
    if size is not None and int(size) > limits.max_file_bytes:
        raise limits.file_too_big(uri, int(size))
    count = 0
    if fmt == "parquet":
        rows = _parquet(obj["Body"], uri, report, limits)
    else:
        rows = _jsonl(obj["Body"], uri, report, limits)
    for line, record in rows:
        if max_rows is not None and count >= max_rows:
            return
        count += 1
        yield line, record


def _parquet(body, uri: str, report: DatasetReport, limits: InputLimits):
    import pyarrow.parquet as pq
    with s3mod.errors(f"reading {uri}"):
        raw = body.read(limits.max_file_bytes + 1)  # the store's ContentLength is not trusted alone
    if len(raw) > limits.max_file_bytes:
        raise limits.file_too_big(uri, limits.max_file_bytes, read_so_far=True)
    with s3mod.errors(f"reading {uri}"):
        table = pq.read_table(io.BytesIO(raw))
    del raw
    for line, record in enumerate(table.to_pylist(), start=1):
        size = len(json.dumps(record, default=str).encode())
        if size > limits.max_row_bytes:
            report.add_error(limits.row_too_big(line, size))
            continue
        yield line, record


def bounded_lines(chunks, max_row_bytes: int, max_file_bytes: int):
    """(line number, the line's bytes, 0) per line of a byte stream, or (line number, None, its size) for a
    line over max_row_bytes, whose bytes are skipped, never held. OverflowError(bytes read) once more than
    max_file_bytes were read."""
    pending, skipping, line, total = b"", 0, 0, 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_file_bytes:
            raise OverflowError(total)
        parts = chunk.split(b"\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if skipping:
                skipping += len(part)
            elif len(pending) + len(part) > max_row_bytes:
                skipping, pending = len(pending) + len(part), b""
            else:
                pending += part
            if last:
                break
            line += 1
            yield (line, None, skipping) if skipping else (line, pending, 0)
            pending, skipping = b"", 0
    if pending or skipping:
        yield (line + 1, None, skipping) if skipping else (line + 1, pending, 0)


def _jsonl(body, uri: str, report: DatasetReport, limits: InputLimits):
    chunks = body.iter_chunks(1024 * 1024) if hasattr(body, "iter_chunks") else iter(lambda: body.read(1024 * 1024), b"")
    lines = bounded_lines(chunks, limits.max_row_bytes, limits.max_file_bytes)
    while True:
        try:
            with s3mod.errors(f"reading {uri}"):
                item = next(lines, None)
        except OverflowError as err:
            raise limits.file_too_big(uri, int(err.args[0]), read_so_far=True) from None
        if item is None:
            return
        line, raw, skipped = item
        if raw is None:
            report.add_error(limits.row_too_big(line, skipped))
            continue
        if not raw.strip():
            continue
        try:
            yield line, json.loads(raw)
        except ValueError as err:
            report.add_error(f"line {line}: not valid JSON ({err.msg} at column {err.colno})")


# --- checking ---------------------------------------------------------------------------------
def _text(record: dict, field: str, line: int, problems: list, required: bool = True, allow_empty: bool = False):
    value = record.get(field)
    if value is None:
        if required:
            problems.append(f"line {line}: missing field {field!r}")
        return None
    if not isinstance(value, str):
        problems.append(f"line {line}: field {field!r} must be a string (got {type(value).__name__})")
        return None
    if not value.strip() and not allow_empty:
        problems.append(f"line {line}: field {field!r} is empty")
        return None
    return value


def to_messages(record, fmt: str, fields: dict, line: int, problems: list) -> Optional[list]:
    """The row as chat messages (None for text rows or when the row is invalid)."""
    if not isinstance(record, dict):
        problems.append(f"line {line}: a row must be a JSON object (got {type(record).__name__})")
        return None
    system = record.get(fields.get("system", "system")) if fmt != "text" else None
    head = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
    if fmt == "promptCompletion":
        prompt = _text(record, fields["prompt"], line, problems)
        completion = _text(record, fields["completion"], line, problems, allow_empty=True)
        if prompt is None or completion is None:
            return None
        return head + [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    if fmt == "instruction":
        instruction = _text(record, fields["instruction"], line, problems)
        extra = _text(record, fields["input"], line, problems, required=False, allow_empty=True)
        response = _text(record, fields["response"], line, problems, allow_empty=True)
        if instruction is None or response is None:
            return None
        user = instruction if not extra else f"{instruction}\n\n{extra}"
        return head + [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    if fmt == "chat":
        messages = record.get(fields["messages"])
        if not isinstance(messages, list) or not messages:
            problems.append(f"line {line}: field {fields['messages']!r} must be a non-empty list of messages")
            return None
        out = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                problems.append(f"line {line}: message {i} must be {{role: system|user|assistant, content: string}}")
                return None
            out.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "assistant" for m in out):
            problems.append(f"line {line}: no assistant message to learn from")
            return None
        return out
    raise ValueError(f"unknown format {fmt}")


def completion_of(messages: list) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "assistant")


def check_json_completion(completion: str, validator, line: int, problems: list) -> None:
    try:
        value = json.loads(completion)
    except ValueError as err:
        problems.append(f"line {line}: completion is not valid JSON ({err.msg})")
        return
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(root)"
        problems.append(f"line {line}: completion does not match completionJsonSchema at {where}: {errors[0].message}")


# --- tokenising -------------------------------------------------------------------------------
class Encoder:
    """Rows -> (input_ids, labels) with prompt tokens masked, using the tokenizer's chat template."""

    def __init__(self, tokenizer, max_seq_length: int):
        self.tok, self.max_len = tokenizer, max_seq_length
        self.has_template = bool(getattr(tokenizer, "chat_template", None))

    def _ids(self, text: str) -> list:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def render_prompt(self, messages: list) -> str:
        """The text a model is given at inference time: everything up to the assistant's answer."""
        if self.has_template:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant: "

    def _render(self, messages: list) -> str:
        if self.has_template:
            return self.tok.apply_chat_template(messages, tokenize=False)
        return self.render_prompt(messages[:-1]) + messages[-1]["content"] + (self.tok.eos_token or "") + "\n"

    def encode_chat(self, messages: list) -> tuple[list, list]:
        ids, labels, done = [], [], ""
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt, full = self.render_prompt(messages[:i]), self._render(messages[: i + 1])
            if not (prompt.startswith(done) and full.startswith(prompt)):
                raise ValueError("the chat template does not render conversations prefix-stably")
            for text, trained in ((prompt[len(done):], False), (full[len(prompt):], True)):
                piece = self._ids(text)
                ids += piece
                labels += piece if trained else [IGNORE] * len(piece)
            done = full
        return ids, labels

    def encode_text(self, text: str) -> tuple[list, list]:
        ids = self._ids(text) + ([self.tok.eos_token_id] if self.tok.eos_token_id is not None else [])
        return ids, list(ids)


# --- the whole dataset ------------------------------------------------------------------------
def load(cfg, s3, tokenizer) -> tuple[list, list, DatasetReport]:
    """Reads, checks and tokenises training and validation data; raises DatasetInvalid on bad rows."""
    ds = cfg.dataset
    report = DatasetReport()
    encoder = Encoder(tokenizer, cfg.training["maxSeqLength"])
    validator = None
    if ds.get("completionJsonSchema"):
        import jsonschema
        validator = jsonschema.Draft202012Validator(json.loads(ds["completionJsonSchema"]))
    train = _examples(s3, ds["uri"], cfg, encoder, validator, report, ds.get("maxRows"))
    val: list = []
    if ds.get("validationUri"):
        val_report = DatasetReport()
        val = _examples(s3, ds["validationUri"], cfg, encoder, validator, val_report, None,
                        field="spec.dataset.validationUri")
        for e in val_report.errors:
            report.add_error(f"validation data {e}")
        report.error_count += max(0, val_report.error_count - len(val_report.errors))
    if report.error_count:
        shown = "\n".join(report.errors)
        more = f"\n… and {report.error_count - len(report.errors)} more" if report.error_count > len(report.errors) else ""
        raise TrainerFailure(ExitCode.DATASET_INVALID,
                             f"{report.error_count} invalid row(s) in {ds['uri']}:\n{shown}{more}", stats=report.summary())
    if ds.get("validationSplit"):
        order = list(range(len(train)))
        random.Random(cfg.training["seed"]).shuffle(order)
        n_val = max(1, math.ceil(len(train) * ds["validationSplit"]))
        held = set(order[:n_val])
        val = [e for i, e in enumerate(train) if i in held]
        train = [e for i, e in enumerate(train) if i not in held]
    if not train:
        raise TrainerFailure(ExitCode.DATASET_INVALID, f"no usable training rows in {ds['uri']}", stats=report.summary())
    report.rows, report.validation_rows = len(train), len(val)
    report.tokens = sum(len(e) for e in train)
    report.trained_tokens = sum(sum(1 for x in e.labels if x != IGNORE) for e in train)
    return train, val, report


def load_regression_set(cfg, s3, tokenizer) -> list:
    """spec.evaluation.regressionUri: promptCompletion rows with the default field names."""
    uri = cfg.spec.get("evaluation", {}).get("regressionUri")
    if not uri:
        return []
    report = DatasetReport()
    from .config import DEFAULT_FIELDS
    out = _examples(s3, uri, cfg, Encoder(tokenizer, cfg.training["maxSeqLength"]), None, report, None,
                    fmt="promptCompletion", fields=DEFAULT_FIELDS["promptCompletion"],
                    field="spec.evaluation.regressionUri")
    if report.error_count:
        raise TrainerFailure(ExitCode.DATASET_INVALID,
                             f"{report.error_count} invalid row(s) in {uri}:\n" + "\n".join(report.errors))
    return out


def _examples(s3, uri: str, cfg, encoder: Encoder, validator, report: DatasetReport, max_rows,
              fmt: Optional[str] = None, fields: Optional[dict] = None, field: str = "spec.dataset.uri") -> list:
    fmt, fields, max_len = fmt or cfg.dataset["format"], fields or cfg.fields, cfg.training["maxSeqLength"]
    seen: set = set()
    out = []
    records = read_records(s3, uri, file_format(uri, cfg.dataset.get("fileFormat", "auto")), max_rows, report,
                           InputLimits.of(cfg, field))
    for line, record in records:
        problems: list = []
        digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).digest()
        if digest in seen:
            report.duplicate_rows += 1
        seen.add(digest)
        if fmt == "text":
            text = _text(record, fields["text"], line, problems) if isinstance(record, dict) else None
            if not isinstance(record, dict):
                problems.append(f"line {line}: a row must be a JSON object")
            if problems:
                for p in problems:
                    report.add_error(p)
                continue
            ids, labels = encoder.encode_text(text)
        else:
            messages = to_messages(record, fmt, fields, line, problems)
            if messages is not None and validator is not None:
                check_json_completion(completion_of(messages), validator, line, problems)
            if problems:
                for p in problems:
                    report.add_error(p)
                continue
            if not completion_of(messages).strip():
                report.empty_completions += 1
            ids, labels = encoder.encode_chat(messages)
        if len(ids) > max_len:
            report.rows_over_max_seq_length += 1
            ids, labels = ids[:max_len], labels[:max_len]
        if all(x == IGNORE for x in labels[1:]):
            report.skipped_rows += 1  # nothing left to learn from (empty, or all truncated away)
            continue
        out.append(Example(ids, labels, line))
    return out
