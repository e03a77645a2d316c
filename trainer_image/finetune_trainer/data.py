"""Checking and tokenising the dataset.

Records come from reading.py (bytes to parsed rows), each checked here against the declared
format and field mapping. Problems are collected with their line numbers (the first
MAX_REPORTED are reported) so a bad dataset fails before any GPU is used. Rows become token
ids with labels: prompt tokens are masked (-100) so the loss is on completions only, using the
model's own chat template for chat, instruction and prompt/completion data.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from typing import Iterator, Optional

from .outcomes import ExitCode, TrainerFailure
from .reading import InputLimits, file_format, read_records
from .report_types import DatasetReport

IGNORE = -100
ROLES = {"system", "user", "assistant"}


@dataclasses.dataclass
class Example:
    input_ids: list
    labels: list
    line: int

    def __len__(self) -> int:
        return len(self.input_ids)


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


def _examples(*args, **kwargs) -> list:
    return list(iter_examples(*args, **kwargs))


def iter_examples(s3, uri: str, cfg, encoder: Encoder, validator, report: DatasetReport, max_rows,
                  fmt: Optional[str] = None, fields: Optional[dict] = None,
                  field: str = "spec.dataset.uri") -> Iterator[Example]:
    """One Example per usable row of one dataset object, in file order; problems go into report."""
    fmt, fields, max_len = fmt or cfg.dataset["format"], fields or cfg.fields, cfg.training["maxSeqLength"]
    seen: set = set()
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
        yield Example(ids, labels, line)
