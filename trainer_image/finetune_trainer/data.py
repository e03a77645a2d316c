"""Checking and tokenising the dataset.

Records come from reading.py (bytes to parsed rows), each checked here against the declared
format and field mapping. Problems are collected with their line numbers (the first
MAX_REPORTED are reported) so a bad dataset fails before any GPU is used. Rows become token
ids with labels: prompt tokens are masked (-100) so the loss is on completions only, using the
model's own chat template for chat, instruction and prompt/completion data.
"""
from __future__ import annotations

import array
import dataclasses
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Optional

from . import chat_templates, store
from .outcomes import ExitCode, TrainerFailure
from .parsing import MAX_DEPTH, nesting_depth
from .reading import InputLimits, file_format, read_records
from .report_types import DatasetReport

IGNORE = -100
ROLES = {"system", "user", "assistant"}


class NotPrefixStable(ValueError):
    """A conversation the chat template cannot split into masked prompt and trained answer pieces."""


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
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or m["role"] not in ROLES \
                    or not isinstance(m.get("content"), str):
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
    depth = nesting_depth(completion.encode("utf-8", "surrogatepass"))
    if depth > MAX_DEPTH:
        problems.append(f"line {line}: completion nests arrays/objects {depth} deep, over the limit of {MAX_DEPTH}")
        return
    try:
        value = json.loads(completion)
    except ValueError as err:  # not only JSONDecodeError: Python's 4300-digit cap on integers too
        problems.append(f"line {line}: completion is not valid JSON ({getattr(err, 'msg', str(err).split(';')[0])})")
        return
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(root)"
        problems.append(f"line {line}: completion does not match completionJsonSchema at {where}: {errors[0].message}")


# --- tokenising -------------------------------------------------------------------------------
class Encoder:
    """Rows -> (input_ids, labels) with prompt tokens masked, using the tokenizer's chat template.

    A row is rendered into pieces (text, trained), each tokenized on its own: the prompt up to each
    assistant turn (masked) and that turn (trained). Many rows' pieces go to the fast tokenizer in one
    call (encode_many / count_many), and the template is rendered by its compiled form directly, which is
    what apply_chat_template renders for plain {role, content} messages (checked on a probe at start)."""

    def __init__(self, tokenizer, max_seq_length: int):
        self.tok, self.max_len = tokenizer, max_seq_length
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self._template = _compiled_template(tokenizer) if self.has_template else None
        self._backend = _rust_backend(tokenizer)

    def _ids(self, text: str) -> list:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _apply(self, messages: list, add_generation_prompt: bool) -> str:
        if self._template is not None:
            return self._template(messages, add_generation_prompt)
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def render_prompt(self, messages: list) -> str:
        """The text a model is given at inference time: everything up to the assistant's answer."""
        if self.has_template:
            return self._apply(messages, True)
        eos = self.tok.eos_token or ""  # after earlier answers too, as _render ends them: prefix-stable
        return "".join(f"{m['role'].capitalize()}: {m['content']}{eos if m['role'] == 'assistant' else ''}\n"
                       for m in messages) + "Assistant: "

    def _render(self, messages: list) -> str:
        if self.has_template:
            return self._apply(messages, False)
        return self.render_prompt(messages[:-1]) + messages[-1]["content"] + (self.tok.eos_token or "") + "\n"

    def chat_pieces(self, messages: list) -> list:
        """[(text, trained)]: the prompt before each assistant turn (masked), then that turn (trained)."""
        pieces, done = [], ""
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt, full = self.render_prompt(messages[:i]), self._render(messages[: i + 1])
            if not (prompt.startswith(done) and full.startswith(prompt)):
                raise NotPrefixStable("the chat template does not render this conversation prefix-stably (each "
                                      "prompt must start with the conversation before it: e.g. a conversation "
                                      "that opens with an assistant message, for some templates)")
            pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
            done = full
        return pieces

    def encode_many(self, texts: list) -> list:
        """Each text's token ids, exactly as _ids gives them, from one tokenizer call."""
        if not texts:
            return []
        backend = self._backend
        if backend is not None and backend.truncation is None and backend.padding is None:
            return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return self.tok(texts, add_special_tokens=False)["input_ids"]

    def count_many(self, texts: list) -> list:
        """Each text's token count (as len(_ids(text))), without building id lists where the backend allows."""
        if not texts:
            return []
        backend = self._backend
        if backend is not None and backend.truncation is None and backend.padding is None:
            return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"]]

    def pieces(self, messages: Optional[list], text: Optional[str]) -> list:
        """A checked row's pieces; a text row is all trained, with the eos token after it (as encode_text)."""
        return self.chat_pieces(messages) if messages is not None else [(text, True)]

    def _eos(self, messages) -> list:
        return [self.tok.eos_token_id] if messages is None and self.tok.eos_token_id is not None else []

    def assemble(self, rows: list, per_row: list, ids: list) -> list:
        """(input_ids, labels) per row from its pieces' token ids (the flat list of encode_many)."""
        ids_iter, out = iter(ids), []
        for (messages, _), pieces in zip(rows, per_row):
            row_ids, labels = [], []
            for _, trained in pieces:
                piece = list(next(ids_iter))
                row_ids += piece
                labels += piece if trained else [IGNORE] * len(piece)
            eos = self._eos(messages)
            out.append((row_ids + eos, labels + eos))
        return out

    def measure(self, rows: list, per_row: list, counts: list) -> list:
        """truncated_counts(...) per row from its pieces' token counts (the flat list of count_many)."""
        counts = iter(counts)
        return [truncated_counts([(next(counts), trained) for _, trained in pieces]
                                 + [(1, True)] * len(self._eos(messages)), self.max_len)
                for (messages, _), pieces in zip(rows, per_row)]

    def encode_rows(self, rows: list) -> list:
        """(input_ids, labels) per (messages or None, text or None) row, as encode_chat / encode_text give."""
        per_row = [self.pieces(m, t) for m, t in rows]
        return self.assemble(rows, per_row, self.encode_many([text for pieces in per_row for text, _ in pieces]))

    def measure_rows(self, rows: list) -> list:
        """truncated_counts(...) per (messages or None, text or None) row: the lengths validation needs,
        tokenized in one call, no id lists kept."""
        per_row = [self.pieces(m, t) for m, t in rows]
        return self.measure(rows, per_row, self.count_many([text for pieces in per_row for text, _ in pieces]))

    def encode_chat(self, messages: list) -> tuple[list, list]:
        return self.encode_rows([(messages, None)])[0]

    def encode_text(self, text: str) -> tuple[list, list]:
        return self.encode_rows([(None, text)])[0]


def truncated_counts(spans: list, max_len: int) -> tuple[int, int, bool, bool]:
    """For a row of token spans [(length, trained)], after truncation to max_len: (tokens kept, trained
    tokens kept, whether it was over max_len, whether a trained token survives at position >= 1, i.e.
    labels[1:] is not all masked: what iter_examples needs to keep a row)."""
    total = sum(n for n, _ in spans)
    kept = min(total, max_len)
    pos = trained = 0
    learnable = False
    for n, is_trained in spans:
        lo, hi = pos, min(pos + n, kept)
        if is_trained and hi > lo:
            trained += hi - lo
            learnable = learnable or hi > max(lo, 1)
        pos += n
    return kept, trained, total > max_len, learnable


_PROBE = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>there</b>\n  "},
          {"role": "assistant", "content": " Hello!\n"}, {"role": "user", "content": "Bye"},
          {"role": "assistant", "content": "Goodbye."}]


def _compiled_template(tok):
    """The chat template as render(messages, add_generation_prompt), faster than apply_chat_template, or
    None (then apply_chat_template is used): plain Python for a known template source (chat_templates.py),
    else the compiled Jinja template called directly, which skips apply_chat_template's per-call
    preparation (for plain {role, content} string messages it renders the same). Either is used only if
    it renders the probe conversations exactly as apply_chat_template does."""
    try:
        source = tok.get_chat_template()
        render = chat_templates.python_renderer(source)
        if render is None:
            from transformers.utils.chat_template_utils import _compile_jinja_template
            compiled, extra = _compile_jinja_template(source), json.loads(json.dumps(tok.special_tokens_map))

            def render(messages, add_generation_prompt):
                return compiled.render(messages=messages, tools=None, documents=None,
                                       add_generation_prompt=add_generation_prompt, **extra)
        for n, gen in ((1, True), (2, True), (3, False), (5, False), (4, True), (6, True)):
            probe = _PROBE[:n] if n < 6 else _PROBE[1:]
            if render(probe, gen) != tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=gen):
                return None
        return render
    except Exception:  # noqa: BLE001 - any surprise: the documented path
        return None


def _rust_backend(tok):
    """The fast tokenizer's Rust backend, called directly for batches (no per-token Python objects), or
    None: only when it gives the same ids as the tokenizer itself on a probe."""
    backend = getattr(tok, "_tokenizer", None)
    if not getattr(tok, "is_fast", False) or not hasattr(backend, "encode_batch_fast") \
            or getattr(tok, "split_special_tokens", False) or getattr(backend, "encode_special_tokens", False):
        return None
    try:
        probe = [json.dumps(_PROBE), "".join(str(t) for t in tok.all_special_tokens) + " x\n\n  y", "", "\u00e9t\u00e9 42"]
        got = [e.ids for e in backend.encode_batch_fast(probe, add_special_tokens=False)]
        return backend if got == tok(probe, add_special_tokens=False)["input_ids"] else None
    except Exception:  # noqa: BLE001
        return None


# --- the whole dataset ------------------------------------------------------------------------
def load(cfg, s3, tokenizer) -> tuple:
    """Reads, checks and tokenises training and validation data into on-disk stores (store.py) under
    the runtime work dir; raises DatasetInvalid on bad rows. Returns (train, validation, report)."""
    ds = cfg.dataset
    report = DatasetReport()
    encoder = Encoder(tokenizer, cfg.training["maxSeqLength"])
    validator = None
    if ds.get("completionJsonSchema"):
        import jsonschema
        validator = jsonschema.Draft202012Validator(json.loads(ds["completionJsonSchema"]))
    work = cfg.runtime.work_dir
    train = store.build(store.folder_for(work, "train"),
                        iter_examples(s3, ds["uri"], cfg, encoder, validator, report, ds.get("maxRows")))
    val = None
    if ds.get("validationUri"):
        val_report = DatasetReport()
        val = store.build(store.folder_for(work, "validation"),
                          iter_examples(s3, ds["validationUri"], cfg, encoder, validator, val_report, None,
                                        field="spec.dataset.validationUri"))
        for e in val_report.errors:
            report.add_error(f"validation data {e}")
        report.error_count += max(0, val_report.error_count - len(val_report.errors))
    if report.error_count:
        shown = "\n".join(report.errors)
        more = f"\n… and {report.error_count - len(report.errors)} more" if report.error_count > len(report.errors) else ""
        raise TrainerFailure(ExitCode.DATASET_INVALID,
                             f"{report.error_count} invalid row(s) in {ds['uri']}:\n{shown}{more}", stats=report.summary())
    if ds.get("validationSplit"):  # indices into the one store, never a copy of the rows
        kept, held = store.split(len(train), ds["validationSplit"], cfg.training["seed"])
        train, val = train.subset(kept), train.subset(held)
    if val is None:
        val = train.subset([])
    if not len(train):
        raise TrainerFailure(ExitCode.DATASET_INVALID, f"no usable training rows in {ds['uri']}", stats=report.summary())
    report.rows, report.validation_rows = len(train), len(val)
    report.tokens, report.trained_tokens = train.tokens, train.trained_tokens
    return train, val, report


def load_regression_set(cfg, s3, tokenizer):
    """spec.evaluation.regressionUri: promptCompletion rows with the default field names, as a store
    (an empty list when there is no regression set)."""
    uri = cfg.spec.get("evaluation", {}).get("regressionUri")
    if not uri:
        return []
    report = DatasetReport()
    from .config import DEFAULT_FIELDS
    out = store.build(store.folder_for(cfg.runtime.work_dir, "regression"),
                      iter_examples(s3, uri, cfg, Encoder(tokenizer, cfg.training["maxSeqLength"]), None, report,
                                    None, fmt="promptCompletion", fields=DEFAULT_FIELDS["promptCompletion"],
                                    field="spec.evaluation.regressionUri"))
    if report.error_count:
        raise TrainerFailure(ExitCode.DATASET_INVALID,
                             f"{report.error_count} invalid row(s) in {uri}:\n" + "\n".join(report.errors))
    return out


def _examples(*args, **kwargs) -> list:
    return list(iter_examples(*args, **kwargs))


def iter_examples(s3, uri: str, cfg, encoder: Encoder, validator, report: DatasetReport, max_rows,
                  fmt: Optional[str] = None, fields: Optional[dict] = None,
                  field: str = "spec.dataset.uri") -> Iterator[Example]:
    """One Example per usable row of one dataset object, in file order; problems go into report.
    Rows are tokenized BATCH_ROWS at a time; the duplicate count is added when the object is exhausted."""
    fmt, fields = fmt or cfg.dataset["format"], fields or cfg.fields
    digests = RowDigests()
    rows = checked_rows(_records(s3, uri, cfg, max_rows, report, field), fmt, fields, validator, report, digests)
    for batch, encoded in tokenized(_batches(rows), encoder, count_only=False, report=report):
        for (line, messages, _), (ids, labels) in zip(batch, encoded):
            if messages is not None and not completion_of(messages).strip():
                report.empty_completions += 1
            if len(ids) > encoder.max_len:
                report.rows_over_max_seq_length += 1
                ids, labels = ids[:encoder.max_len], labels[:encoder.max_len]
            if all(x == IGNORE for x in labels[1:]):
                report.skipped_rows += 1  # nothing left to learn from (empty, or all truncated away)
                continue
            yield Example(ids, labels, line)
    report.duplicate_rows += digests.duplicates()


# --- checked rows: what training and validation share -------------------------------------------
BATCH_ROWS = 512  # rows per tokenizer call: large enough to amortise the call, small enough to stay O(1)


class RowDigests:
    """Exact-duplicate counting in 8 bytes a row: the 64-bit hash of each row's canonical JSON goes into
    an int64 array, counted with one sort at the end (a set of sha256 digests costs ~120 bytes a row).
    A collision between two different rows is ~n²/2⁶⁵: 4e-8 at 1 M rows, and only miscounts one."""

    def __init__(self):
        self._hashes = array.array("q")

    def add(self, record) -> None:
        self._hashes.append(hash(json.dumps(record, sort_keys=True, default=str)))

    def duplicates(self) -> int:
        if not self._hashes:
            return 0
        import numpy as np
        return len(self._hashes) - int(np.unique(np.frombuffer(self._hashes, dtype=np.int64)).size)


def _records(s3, uri: str, cfg, max_rows, report: DatasetReport, field: str):
    return read_records(s3, uri, file_format(uri, cfg.dataset.get("fileFormat", "auto")), max_rows, report,
                        InputLimits.of(cfg, field))


def checked_rows(records, fmt: str, fields: dict, validator, report: DatasetReport,
                 digests: RowDigests) -> Iterator[tuple]:
    """(line, messages, None) per chat-like row or (line, None, text) per text row that passed the format
    checks, in file order; problems go into report, every row's digest into digests."""
    for line, record in records:
        problems: list = []
        digests.add(record)
        if fmt == "text":
            text = _text(record, fields["text"], line, problems) if isinstance(record, dict) else None
            if not isinstance(record, dict):
                problems.append(f"line {line}: a row must be a JSON object")
            item = (line, None, text)
        else:
            messages = to_messages(record, fmt, fields, line, problems)
            if messages is not None and validator is not None:
                check_json_completion(completion_of(messages), validator, line, problems)
            item = (line, messages, None)
        if problems:
            for p in problems:
                report.add_error(p)
            continue
        yield item


def tokenized(batches, encoder: Encoder, count_only: bool, report: DatasetReport) -> Iterator[tuple[list, list]]:
    """(batch, results) per batch of checked rows, in order: truncated_counts per row (count_only) or
    (input_ids, labels) per row; a row the chat template cannot render prefix-stably is a problem in report,
    left out of its batch. The tokenizer works on one batch in a worker thread while this thread reads,
    checks and renders the next (the Rust tokenizer releases the GIL, so two cores are used); at most two
    batches are in flight."""
    tokenize, finish = (encoder.count_many, encoder.measure) if count_only else (encoder.encode_many, encoder.assemble)
    with ThreadPoolExecutor(1, thread_name_prefix="tokenize") as pool:
        pending = None
        for batch in batches:
            batch, per_row = _rendered(batch, encoder, report)
            rows = [(m, t) for _, m, t in batch]
            job = pool.submit(tokenize, [text for pieces in per_row for text, _ in pieces])
            if pending is not None:
                yield pending[0], finish(pending[1], pending[2], pending[3].result())
            pending = (batch, rows, per_row, job)
        if pending is not None:
            yield pending[0], finish(pending[1], pending[2], pending[3].result())


def _rendered(batch: list, encoder: Encoder, report: DatasetReport) -> tuple[list, list]:
    kept, per_row = [], []
    for row in batch:
        try:
            per_row.append(encoder.pieces(row[1], row[2]))
        except NotPrefixStable as err:
            report.add_error(f"line {row[0]}: {err}")
            continue
        kept.append(row)
    return kept, per_row


def _batches(rows, size: int = 0) -> Iterator[list]:
    rows = iter(rows)
    while batch := list(itertools.islice(rows, size or BATCH_ROWS)):
        yield batch


# --- the validate-only pass -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DatasetObject:
    """One object the validate pass reads: its role (Contract A / finetune_api.datasets), where it comes from."""
    role: str
    uri: str
    field: str
    fmt: str
    fields: dict
    check_completion: bool
    max_rows: Optional[int]


def dataset_objects(cfg) -> list:
    """Training, validation and regression objects, in the order the validate pass reads them."""
    from .config import DEFAULT_FIELDS
    ds, fmt = cfg.dataset, cfg.dataset["format"]
    out = [DatasetObject("train", ds["uri"], "spec.dataset.uri", fmt, cfg.fields, True, ds.get("maxRows"))]
    if ds.get("validationUri"):
        out.append(DatasetObject("validation", ds["validationUri"], "spec.dataset.validationUri", fmt, cfg.fields,
                                 True, None))
    regression = (cfg.spec.get("evaluation") or {}).get("regressionUri")
    if regression:
        out.append(DatasetObject("regression", regression, "spec.evaluation.regressionUri", "promptCompletion",
                                 DEFAULT_FIELDS["promptCompletion"], False, None))
    return out


class Tally:
    """Counts of one object's usable rows; with keep=True also each row's (tokens, trained) in two int32
    arrays (8 bytes a row), which a validationSplit needs to count the rows it holds out."""

    def __init__(self, keep: bool = False):
        self.rows = self.tokens = self.trained = 0
        self.each = (array.array("i"), array.array("i")) if keep else None

    def add(self, tokens: int, trained: int) -> None:
        self.rows, self.tokens, self.trained = self.rows + 1, self.tokens + tokens, self.trained + trained
        if self.each is not None:
            self.each[0].append(tokens)
            self.each[1].append(trained)


def validate(cfg, s3, tokenizer, gate=None) -> DatasetReport:
    """The validate-only pass over training, validation and regression objects, streaming in bounded
    memory: the same checks and DatasetInvalid message as load(), O(1) state per row (counts, the first
    MAX_REPORTED problems, an 8-byte digest), token counts from batched tokenization, no examples kept.
    gate (Contract A): gate.row(role, line, messages) / gate.text(role, line, text) per checked row, in
    file order, returning the row to use or None to drop it; gate.finish(report) after all objects."""
    ds, encoder = cfg.dataset, Encoder(tokenizer, cfg.training["maxSeqLength"])
    validator = completion_validator(ds)
    report, tallies = DatasetReport(), {}
    for obj in dataset_objects(cfg):
        sub = report if obj.role == "train" else DatasetReport()
        tallies[obj.role] = tally = Tally(keep=obj.role == "train" and bool(ds.get("validationSplit")))
        _validate_object(s3, cfg, obj, encoder, validator if obj.check_completion else None, sub, tally, gate, report)
        if sub is not report:
            merge_problems(report, sub, f"{obj.role} data ")
    if report.error_count:
        raise invalid_rows(report, ds["uri"] if report.errors and not report.errors[0].startswith("regression data ")
                           else (cfg.spec.get("evaluation") or {}).get("regressionUri", ds["uri"]))
    _count_training(report, tallies, ds, cfg.training["seed"])
    if gate is not None:
        gate.finish(report)
    if not report.rows:
        dropped = f" ({report.dropped_rows} dropped by spec.dataSafety)" if report.dropped_rows else ""
        raise TrainerFailure(ExitCode.DATASET_INVALID, f"no usable training rows in {ds['uri']}{dropped}",
                             stats=report.summary())
    return report


def _validate_object(s3, cfg, obj: DatasetObject, encoder: Encoder, validator, sub: DatasetReport, tally: Tally,
                     gate, report: DatasetReport) -> None:
    """Reads one object: its problems and per-object counts go into sub, gate counts into report."""
    digests = RowDigests()
    rows = checked_rows(_records(s3, obj.uri, cfg, obj.max_rows, sub, obj.field), obj.fmt, obj.fields, validator,
                        sub, digests)
    if gate is not None:
        rows = gated(rows, gate, obj.role, report)
    for batch, measured in tokenized(_batches(rows), encoder, count_only=True, report=sub):
        for (_, messages, _), (tokens, trained, over, learnable) in zip(batch, measured):
            if messages is not None and not completion_of(messages).strip():
                sub.empty_completions += 1
            sub.rows_over_max_seq_length += over
            if not learnable:
                sub.skipped_rows += 1
                continue
            tally.add(tokens, trained)
    sub.duplicate_rows += digests.duplicates()


def gated(rows, gate, role: str, report: DatasetReport) -> Iterator[tuple]:
    """Contract A: each checked row through the gate; None drops it, anything else replaces it."""
    for line, messages, text in rows:
        before = messages if messages is not None else text
        after = gate.row(role, line, messages) if messages is not None else gate.text(role, line, text)
        if after is None:
            report.dropped_rows += 1
            continue
        if after != before:
            report.changed_rows += 1
        yield (line, after, None) if messages is not None else (line, None, after)


def _count_training(report: DatasetReport, tallies: dict, ds: dict, seed: int) -> None:
    train = tallies["train"]
    report.rows, report.tokens, report.trained_tokens = train.rows, train.tokens, train.trained
    report.validation_rows = tallies["validation"].rows if "validation" in tallies else 0
    report.regression_rows = tallies["regression"].rows if "regression" in tallies else 0
    if ds.get("validationSplit"):  # the same held-out rows as load(): store.split's seeded shuffle
        import numpy as np
        _, held = store.split(train.rows, ds["validationSplit"], seed)
        tokens, trained = (np.frombuffer(a, dtype=np.int32) for a in train.each)
        report.rows, report.validation_rows = train.rows - len(held), len(held)
        report.tokens -= int(tokens[held].sum(dtype=np.int64))
        report.trained_tokens -= int(trained[held].sum(dtype=np.int64))


def completion_validator(ds: dict):
    if not ds.get("completionJsonSchema"):
        return None
    import jsonschema
    return jsonschema.Draft202012Validator(json.loads(ds["completionJsonSchema"]))


def merge_problems(report: DatasetReport, sub: DatasetReport, prefix: str) -> None:
    """Another object's problems into report (prefixed, the total counted), and its sources."""
    for e in sub.errors:
        report.add_error(prefix + e)
    report.error_count += max(0, sub.error_count - len(sub.errors))
    report.sources.extend(s for s in getattr(sub, "sources", ()) if s not in report.sources)


def invalid_rows(report: DatasetReport, uri: str) -> TrainerFailure:
    shown = "\n".join(report.errors)
    more = f"\n… and {report.error_count - len(report.errors)} more" if report.error_count > len(report.errors) else ""
    return TrainerFailure(ExitCode.DATASET_INVALID, f"{report.error_count} invalid row(s) in {uri}:\n{shown}{more}",
                          stats=report.summary())
