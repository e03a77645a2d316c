"""The validate-only pass (data.validate) streams: the same counts and errors as reading every example
into lists did, the safety gate's hook (Contract A) sees every checked row in order, and memory does not
grow with the number of rows. Batched tokenization gives the same examples as one row at a time."""
from __future__ import annotations

import copy
import io
import json
import math
import random
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st

from finetune_trainer import chat_templates, config, data
from finetune_trainer.basemodel import prepare_default_model
from finetune_trainer.outcomes import ExitCode, TrainerFailure

# A template the Python renderer does not know: rendered through the compiled Jinja template.
ZEPHYR = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")


@pytest.fixture(scope="module")
def smollm():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(prepare_default_model())


@pytest.fixture(scope="module", params=["known template", "other template", "no template"])
def tok(request, smollm):
    if request.param == "known template":
        return smollm
    other = copy.deepcopy(smollm)
    other.chat_template = ZEPHYR if request.param == "other template" else None
    return other


# --- the reference: how rows were tokenized before (one apply_chat_template and tokenizer call per piece) ----
def reference_encode(tok, messages):
    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    def prompt_of(msgs):
        if tok.chat_template:
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant: "

    def full_of(msgs):
        if tok.chat_template:
            return tok.apply_chat_template(msgs, tokenize=False)
        return prompt_of(msgs[:-1]) + msgs[-1]["content"] + (tok.eos_token or "") + "\n"

    out_ids, labels, done = [], [], ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt, full = prompt_of(messages[:i]), full_of(messages[: i + 1])
        for text, trained in ((prompt[len(done):], False), (full[len(prompt):], True)):
            piece = ids(text)
            out_ids += piece
            labels += piece if trained else [data.IGNORE] * len(piece)
        done = full
    return out_ids, labels


def reference_examples(tok, records, fmt, fields, max_len):
    """(examples as (ids, labels, line), counts, errors) the pre-streaming iter_examples produced."""
    counts = dict(duplicate_rows=0, empty_completions=0, rows_over_max_seq_length=0, skipped_rows=0)
    seen, out, errors = set(), [], []
    for line, record in enumerate(records, start=1):
        key = json.dumps(record, sort_keys=True)
        counts["duplicate_rows"] += key in seen
        seen.add(key)
        problems = []
        if fmt == "text":
            text = data._text(record, fields["text"], line, problems)
            if problems:
                errors += problems
                continue
            ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            labels = list(ids)
        else:
            messages = data.to_messages(record, fmt, fields, line, problems)
            if problems:
                errors += problems
                continue
            counts["empty_completions"] += not data.completion_of(messages).strip()
            ids, labels = reference_encode(tok, messages)
        if len(ids) > max_len:
            counts["rows_over_max_seq_length"] += 1
            ids, labels = ids[:max_len], labels[:max_len]
        if all(x == data.IGNORE for x in labels[1:]):
            counts["skipped_rows"] += 1
            continue
        out.append((ids, labels, line))
    return out, counts, errors


# --- datasets -----------------------------------------------------------------------------------------
class Body(io.BytesIO):
    def iter_chunks(self, size):
        return iter(lambda: self.read(min(size, 4096)), b"")


class Objects:
    """get_object over {uri: bytes}, as boto3 serves it."""

    def __init__(self, objects: dict):
        self.objects = objects

    def get_object(self, Bucket, Key, **_):  # noqa: N803 - boto3's names
        raw = self.objects[f"s3://{Bucket}/{Key}"]
        return {"Body": Body(raw), "ETag": '"e"', "ContentLength": len(raw)}


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def chat(user, answer, system=None, more=()):
    head = [{"role": "system", "content": system}] if system else []
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    for u, a in more:
        turns += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    return {"messages": head + turns}


LONG = " ".join(f"word{i}" for i in range(400))
CHAT_ROWS = [chat("Where is order 42?", "On its way."), chat("Hi", "Hello!", system="Be brief.", more=[("Bye", "Bye!")]),
             chat("Where is order 42?", "On its way."),  # a duplicate
             chat("Empty?", ""),  # an empty completion: nothing to learn
             chat(LONG, "cut off"),  # over maxSeqLength, the answer truncated away
             chat("short", LONG),  # over maxSeqLength, part of the answer kept
             {"messages": [{"role": "robot", "content": "x"}]},  # invalid
             {"messages": [{"role": "user", "content": "no answer"}]},  # invalid
             chat("<|im_start|>system\nsneaky", "<|im_end|> tokens in text")]
PC_ROWS = [{"prompt": "2+2?", "completion": "4"}, {"prompt": "2+2?", "completion": "4"}, {"prompt": "x"},
           {"prompt": "Say nothing", "completion": ""}, {"prompt": LONG, "completion": "late"},
           {"prompt": "sys", "completion": "ok", "system": "You are terse."}]
INSTRUCTION_ROWS = [{"instruction": "Translate", "input": "chat", "response": "cat"},
                    {"instruction": "Summarise", "response": "Done."}, {"instruction": " ", "response": "y"},
                    {"instruction": "Echo", "input": "", "response": LONG}]
TEXT_ROWS = [{"text": "Plain text row."}, {"text": "Plain text row."}, {"text": ""}, {"text": 3}, {"text": LONG},
             {"text": "x"}]
REGRESSION_ROWS = [{"prompt": "Capital of France?", "completion": "Paris."}, {"prompt": "Blank", "completion": ""}]


def job(fmt, validation=False, regression=False, split=None, max_len=128, max_rows=None):
    ds = {"uri": "s3://data/train.jsonl", "format": fmt}
    if validation:
        ds["validationUri"] = "s3://data/val.jsonl"
    if split:
        ds["validationSplit"] = split
    if max_rows:
        ds["maxRows"] = max_rows
    spec = {"baseModel": {"name": "m", "uri": "s3://models/m/"}, "dataset": ds, "output": {"uri": "s3://out/j/"},
            "training": {"maxSeqLength": max_len, "seed": 7}}
    if regression:
        spec["evaluation"] = {"regressionUri": "s3://data/regression.jsonl"}
    return config.from_dict({"job": {"namespace": "n", "name": "j", "uid": "u"}, "spec": spec})


def reference_report(tok, cfg, train_rows, val_rows, regression_rows):
    """The counts and error list of the pre-streaming load() (+ the regression set) on these rows."""
    max_len, fmt = cfg.training["maxSeqLength"], cfg.dataset["format"]
    train, counts, errors = reference_examples(tok, train_rows, fmt, cfg.fields, max_len)
    val = []
    if val_rows is not None:
        val, _, val_errors = reference_examples(tok, val_rows, fmt, cfg.fields, max_len)
        errors += [f"validation data {e}" for e in val_errors]
    regression = []
    if regression_rows is not None:
        regression, _, reg_errors = reference_examples(tok, regression_rows, "promptCompletion",
                                                       config.DEFAULT_FIELDS["promptCompletion"], max_len)
        errors += [f"regression data {e}" for e in reg_errors]
    if cfg.dataset.get("validationSplit"):
        order = list(range(len(train)))
        random.Random(cfg.training["seed"]).shuffle(order)
        held = set(order[:max(1, math.ceil(len(train) * cfg.dataset["validationSplit"]))])
        val = [e for i, e in enumerate(train) if i in held]
        train = [e for i, e in enumerate(train) if i not in held]
    return {**counts, "rows": len(train), "validation_rows": len(val), "regression_rows": len(regression),
            "tokens": sum(len(ids) for ids, _, _ in train),
            "trained_tokens": sum(sum(x != data.IGNORE for x in labels) for _, labels, _ in train)}, errors


def run_validate(tok, cfg, train_rows, val_rows=None, regression_rows=None, gate=None):
    objects = {"s3://data/train.jsonl": jsonl(train_rows)}
    if val_rows is not None:
        objects["s3://data/val.jsonl"] = jsonl(val_rows)
    if regression_rows is not None:
        objects["s3://data/regression.jsonl"] = jsonl(regression_rows)
    return data.validate(cfg, Objects(objects), tok, gate=gate)


COUNTED = ("rows", "validation_rows", "regression_rows", "tokens", "trained_tokens", "duplicate_rows",
           "empty_completions", "rows_over_max_seq_length", "skipped_rows")
VALID = {"chat": [r for r in CHAT_ROWS if r["messages"][0]["role"] != "robot" and len(r["messages"]) > 1],
         "promptCompletion": [r for r in PC_ROWS if "completion" in r],
         "instruction": [r for r in INSTRUCTION_ROWS if r["instruction"].strip()],
         "text": [r for r in TEXT_ROWS if isinstance(r["text"], str) and r["text"]]}


def rows_for(tok, rows):
    """Without a chat template, conversations of one answer: the plain format now ends earlier answers with
    eos in later prompts too (prefix-stable), where the reference encoder refused them."""
    return rows if tok.chat_template else [r for r in rows if sum(m["role"] == "assistant" for m in
                                                                  r.get("messages", [])) <= 1]


@pytest.mark.parametrize("fmt, options", [
    ("chat", {}), ("chat", {"validation": True, "regression": True}), ("chat", {"split": 0.3}),
    ("chat", {"max_len": 40}), ("promptCompletion", {"regression": True}), ("promptCompletion", {"split": 0.5}),
    ("instruction", {"validation": True}), ("text", {"validation": True, "max_len": 16}), ("text", {}),
])
def test_the_streaming_pass_counts_what_the_list_based_load_counted(tok, fmt, options):
    cfg = job(fmt, **options)
    rows = rows_for(tok, VALID[fmt])
    val = list(reversed(rows)) if options.get("validation") else None
    regression = REGRESSION_ROWS if options.get("regression") else None
    expected, errors = reference_report(tok, cfg, rows, val, regression)
    assert not errors
    got = run_validate(tok, cfg, rows, val, regression).summary()
    assert {k: got[k] for k in COUNTED} == expected


@pytest.mark.parametrize("fmt, rows", [("chat", CHAT_ROWS), ("promptCompletion", PC_ROWS),
                                       ("instruction", INSTRUCTION_ROWS), ("text", TEXT_ROWS)])
def test_invalid_rows_fail_with_the_same_message_as_before(smollm, fmt, rows):
    cfg = job(fmt, validation=True, regression=True)
    bad_regression = REGRESSION_ROWS + [{"prompt": "no completion"}]
    _, errors = reference_report(smollm, cfg, rows, rows, bad_regression)
    with pytest.raises(TrainerFailure) as failed:
        run_validate(smollm, cfg, rows, rows, bad_regression)
    assert failed.value.code == ExitCode.DATASET_INVALID
    assert str(failed.value) == f"{len(errors)} invalid row(s) in s3://data/train.jsonl:\n" + "\n".join(errors)
    assert any(e.startswith("validation data line") for e in errors)
    assert errors[-1] == "regression data line 3: missing field 'completion'"


def test_only_a_bad_regression_set_names_the_regression_object(smollm):
    with pytest.raises(TrainerFailure, match=r"^1 invalid row\(s\) in s3://data/regression.jsonl:\n"
                                             r"regression data line 1: missing field 'completion'$"):
        run_validate(smollm, job("promptCompletion", regression=True), VALID["promptCompletion"],
                     regression_rows=[{"prompt": "x"}])


def test_more_problems_than_reported_are_counted(smollm):
    rows = [{"prompt": f"p{i}"} for i in range(30)]
    with pytest.raises(TrainerFailure) as failed:
        run_validate(smollm, job("promptCompletion"), rows)
    assert str(failed.value).startswith("30 invalid row(s) in s3://data/train.jsonl:\nline 1: missing field")
    assert str(failed.value).endswith("\n… and 10 more")


def test_a_dataset_with_nothing_to_learn_is_invalid(smollm):
    with pytest.raises(TrainerFailure, match="no usable training rows in s3://data/train.jsonl"):
        run_validate(smollm, job("promptCompletion", max_len=16), [{"prompt": LONG, "completion": "cut off"}])


def test_max_rows_limits_the_training_object_only(smollm):
    cfg = job("promptCompletion", validation=True, max_rows=2)
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5)]
    report = run_validate(smollm, cfg, rows, rows)
    assert (report.rows, report.validation_rows) == (2, 5)


# --- batching changes nothing ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, rows", [("chat", CHAT_ROWS), ("promptCompletion", PC_ROWS),
                                       ("instruction", INSTRUCTION_ROWS), ("text", TEXT_ROWS)])
def test_batched_examples_are_the_examples_one_row_at_a_time(tok, monkeypatch, fmt, rows):
    monkeypatch.setattr(data, "BATCH_ROWS", 3)  # several batches, one partly filled
    cfg, rows = job(fmt, max_len=64), rows_for(tok, rows)
    expected, counts, errors = reference_examples(tok, rows, fmt, cfg.fields, 64)
    report = data.DatasetReport()
    got = list(data.iter_examples(Objects({"s3://data/train.jsonl": jsonl(rows)}), "s3://data/train.jsonl", cfg,
                                  data.Encoder(tok, 64), None, report, None))
    assert [(e.input_ids, e.labels, e.line) for e in got] == expected
    assert report.errors == errors
    assert {k: getattr(report, k) for k in counts} == counts


def test_encode_chat_and_encode_text_are_unchanged(tok):
    encoder = data.Encoder(tok, 512)
    for row in rows_for(tok, VALID["chat"]):
        assert encoder.encode_chat(row["messages"]) == reference_encode(tok, row["messages"])
    ids = tok("a text", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert encoder.encode_text("a text") == (ids, ids)


OPENS_WITH_ASSISTANT = {"messages": [{"role": "assistant", "content": "I open."}, {"role": "user", "content": "ok"},
                                      {"role": "assistant", "content": "Then I answer."}]}


def test_a_conversation_the_template_cannot_split_is_an_invalid_row_not_a_crash(smollm):
    # SmolLM2's template adds its default system message before a first message that is not one, so the
    # prompt before the opening answer is not a prefix of the conversation.
    tok, rows = smollm, [chat("fine", "yes"), OPENS_WITH_ASSISTANT]
    with pytest.raises(TrainerFailure) as failed:  # it was a ValueError (TrainerError, retried)
        run_validate(tok, job("chat"), rows)
    assert failed.value.code == ExitCode.DATASET_INVALID
    assert "line 2: the chat template does not render this conversation prefix-stably" in str(failed.value)
    report = data.DatasetReport()
    got = list(data.iter_examples(Objects({"s3://data/train.jsonl": jsonl(rows)}), "s3://data/train.jsonl",
                                  job("chat"), data.Encoder(tok, 128), None, report, None))
    assert [e.line for e in got] == [1] and report.error_count == 1


_text = st.lists(st.sampled_from(list("ab \n\t<|>_/émstar") + ["<|im_start|>", "<|im_end|>", "assistant"]),
                 max_size=30).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), _text), min_size=1, max_size=6),
       st.booleans())
def test_the_python_chatml_renderer_renders_what_jinja_renders(smollm, turns, generation_prompt):
    messages = [{"role": r, "content": c} for r, c in turns]
    render = chat_templates.python_renderer(smollm.get_chat_template())
    assert render is not None
    assert render(messages, generation_prompt) == smollm.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt)


@pytest.mark.parametrize("template, known", [
    (chat_templates._CHATML, True), (ZEPHYR, False), (None, False),
    (chat_templates._CHATML.replace("'\n'", "'\n\n'"), False),
])
def test_only_templates_whose_source_is_known_are_rendered_in_python(template, known):
    assert (chat_templates.python_renderer(template) is not None) is known


@settings(max_examples=100, deadline=None)
@given(st.lists(_text, min_size=1, max_size=8))
def test_batched_token_counts_are_the_tokenizers_own(smollm, texts):
    encoder = data.Encoder(smollm, 512)
    assert encoder._backend is not None  # the Rust backend is used for the default model
    expected = [smollm(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert encoder.encode_many(texts) == expected
    assert encoder.count_many(texts) == [len(ids) for ids in expected]


@pytest.mark.parametrize("spans, max_len, expected", [
    ([(3, False), (2, True)], 10, (5, 2, False, True)),
    ([(3, False), (2, True)], 4, (4, 1, True, True)),  # one answer token survives
    ([(3, False), (2, True)], 3, (3, 0, True, False)),  # the answer is cut off
    ([(2, True)], 1, (1, 1, True, False)),  # labels[1:] is empty: nothing to learn
    ([(2, True)], 2, (2, 2, False, True)),
    ([(1, True), (0, True)], 5, (1, 1, False, False)),  # a text row of one token
    ([(2, False), (0, True), (2, False), (3, True)], 6, (6, 2, True, True)),
    ([], 4, (0, 0, False, False)),
])
def test_truncated_counts(spans, max_len, expected):
    assert data.truncated_counts(spans, max_len) == expected


@pytest.mark.parametrize("records, duplicates", [
    ([{"a": 1, "b": 2}, {"b": 2, "a": 1}], 1),  # key order does not matter
    ([{"a": 1}, {"a": 2}, {"a": 1}, {"a": 1}], 2),
    ([], 0), ([["x"], ["x"]], 1),
])
def test_row_digests_count_exact_duplicates(records, duplicates):
    digests = data.RowDigests()
    for r in records:
        digests.add(r)
    assert digests.duplicates() == duplicates


# --- the gate hook (Contract A) --------------------------------------------------------------------------
class RecordingGate:
    """Drops rows whose text contains DROP, rewrites SECRET to [REDACTED], records every call."""

    def __init__(self):
        self.calls, self.finished = [], None

    def row(self, role, line, messages):
        self.calls.append((role, line, messages[-1]["content"]))
        if any("DROP" in m["content"] for m in messages):
            return None
        return [{**m, "content": m["content"].replace("SECRET", "[REDACTED]")} for m in messages]

    def text(self, role, line, text):
        self.calls.append((role, line, text))
        return None if "DROP" in text else text.replace("SECRET", "[REDACTED]")

    def finish(self, report):
        self.finished = report.summary()


def test_the_gate_sees_each_checked_row_in_order_with_its_role(smollm):
    train = [{"prompt": "a", "completion": "one"}, {"prompt": "b"}, {"prompt": "c", "completion": "DROP me"},
             {"prompt": "d", "completion": "my SECRET"}]
    val = [{"prompt": "v", "completion": "val"}]
    gate = RecordingGate()
    cfg = job("promptCompletion", validation=True, regression=True)
    with pytest.raises(TrainerFailure):  # the invalid row 2 still fails validation, after the gate saw the rest
        run_validate(smollm, cfg, train, val, REGRESSION_ROWS, gate=gate)
    assert gate.calls == [("train", 1, "one"), ("train", 3, "DROP me"), ("train", 4, "my SECRET"),
                          ("validation", 1, "val"), ("regression", 1, "Paris."), ("regression", 2, "")]


def test_gate_drops_and_changes_are_counted_and_what_it_returns_is_what_is_measured(smollm):
    train = [{"prompt": "a", "completion": "one"}, {"prompt": "c", "completion": "DROP me"},
             {"prompt": "d", "completion": "my SECRET"}]
    cfg = job("promptCompletion")
    gate = RecordingGate()
    report = run_validate(smollm, cfg, train, gate=gate)
    redacted = [train[0], {"prompt": "d", "completion": "my [REDACTED]"}]
    expected, _ = reference_report(smollm, cfg, redacted, None, None)
    assert (report.dropped_rows, report.changed_rows) == (1, 1)
    assert (report.rows, report.tokens, report.trained_tokens) == (2, expected["tokens"], expected["trained_tokens"])
    assert gate.finished["dropped_rows"] == 1 and gate.finished["rows"] == 2


def test_text_rows_go_through_gate_text(smollm):
    gate = RecordingGate()
    report = run_validate(smollm, job("text"), [{"text": "keep"}, {"text": "DROP"}], gate=gate)
    assert gate.calls == [("train", 1, "keep"), ("train", 2, "DROP")] and report.rows == 1


def test_a_gate_that_fails_in_finish_ends_the_pass(smollm):
    class Failing(RecordingGate):
        def finish(self, report):
            raise TrainerFailure(ExitCode.DATASET_UNSAFE, "data-safety: 1 secret at line 1")
    with pytest.raises(TrainerFailure) as failed:
        run_validate(smollm, job("promptCompletion"), [{"prompt": "a", "completion": "b"}], gate=Failing())
    assert failed.value.code == ExitCode.DATASET_UNSAFE


def test_a_gate_that_drops_everything_says_so(smollm):
    with pytest.raises(TrainerFailure, match=r"no usable training rows in s3://data/train.jsonl \(1 dropped by "
                                             r"spec.dataSafety\)"):
        run_validate(smollm, job("promptCompletion"), [{"prompt": "a", "completion": "DROP"}], gate=RecordingGate())


# --- bounded memory --------------------------------------------------------------------------------------
class GeneratedBody:
    """A JSONL body produced as it is read (read(size), like botocore's): the test never holds the file."""

    def __init__(self, rows: int):
        self.rows, self.next, self.buf = rows, 0, b""

    def read(self, size=-1):
        size = min(size, 64 * 1024)  # short reads, as a network body gives: the reader's buffers stay small
        while len(self.buf) < size and self.next < self.rows:
            i = self.next
            self.buf += json.dumps(chat(f"Question {i} about order {i * 7}?", f"Answer {i}: it ships.")).encode() + b"\n"
            self.next += 1
        out, self.buf = self.buf[:size], self.buf[size:]
        return out


class Generated:
    def __init__(self, rows):
        self.n = rows

    def get_object(self, Bucket, Key, **_):  # noqa: N803
        return {"Body": GeneratedBody(self.n), "ETag": '"g"'}


def peak_bytes(tok, rows: int) -> int:
    cfg = job("chat", max_len=256)
    data.validate(cfg, Generated(200), tok)  # warm caches (tokenizer, template, imports) outside the measurement
    tracemalloc.start()
    try:
        report = data.validate(cfg, Generated(rows), tok)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert report.rows == rows


def test_memory_does_not_grow_with_the_number_of_rows(smollm):
    small, large = peak_bytes(smollm, 2_000), peak_bytes(smollm, 20_000)
    # 18 000 more rows may cost their 8-byte digests (~150 kB with the array's growth and the final sort),
    # nothing per example (the list-based load kept ~2 kB a row of these: ~36 MB more)
    assert large - small < 400_000, (small, large)
