"""Evaluation: validation loss and perplexity, and task checks on generated answers.

Task checks generate greedy answers to held-out prompts with the adapter and with the base
model (adapter disabled), then score them: JSON-schema compliance when the dataset declares a
completionJsonSchema, and exact match against the reference. A drop from base to adapter on a
check is what catastrophic forgetting looks like; a rise is what the fine-tune was for.
"""
from __future__ import annotations

import contextlib
import json
import math
from typing import Optional

# Not the standard library's re: `regex` takes a timeout per match, so a catastrophic answerRegex
# (e.g. (a+)+$ over a long answer) costs at most that long instead of hanging the trainer. It ships
# with transformers (its tokenizers use it) and reads re's syntax.
import numpy as np
import regex
import torch

from .data import IGNORE
from .loss import collate
from .store import lengths_of


@torch.no_grad()
def eval_loss(loss_module, examples, batch_size: int, pad_id: int, device) -> dict:
    if not examples:
        return {}
    loss_module.eval()
    total, count = 0.0, 0
    order = np.argsort(lengths_of(examples), kind="stable").tolist()  # shortest first, as sorted() was
    for start in range(0, len(order), batch_size):
        batch = collate([[i] for i in order[start:start + batch_size]], examples, pad_id, packed=False)
        loss_sum, n = loss_module(batch["input_ids"].to(device), batch["labels"].to(device),
                                  attention_mask=batch["attention_mask"].to(device))
        total, count = total + float(loss_sum), count + int(n)
    loss_module.train()
    loss = total / max(count, 1)
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50))}


def _answer(model, tokenizer, prompt_ids: list, max_new_tokens: int, device) -> str:
    input_ids = torch.tensor([prompt_ids], device=device)
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip()


REGEX_TIMEOUT_SECONDS = 1.0


def compile_answer_regex(pattern: str):
    """spec.evaluation.answerRegex compiled as the checks use it; ValueError naming the field if invalid."""
    try:
        return regex.compile(pattern, regex.DOTALL)
    except regex.error as err:
        raise ValueError(f"spec.evaluation.answerRegex is not a valid regular expression: {err}") from None


def regex_fullmatch(pattern, text: str, timeout: float) -> Optional[bool]:
    """Whether text fully matches; None when the match ran past timeout seconds (counted as no match)."""
    try:
        return pattern.fullmatch(text, timeout=timeout) is not None
    except TimeoutError:
        return None


def json_compliant(text: str, validator) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return validator is None or validator.is_valid(value)


@torch.no_grad()
def task_checks(model, tokenizer, samples: list, device, json_schema: str | None, answer_regex: str | None = None,
                max_new_tokens: int = 128, regex_timeout: float = REGEX_TIMEOUT_SECONDS) -> dict:
    """samples: [(prompt token ids, reference answer)]. Scores the adapter and the base model. With an
    answerRegex, <prefix>regex_timeouts counts answers whose match ran past regex_timeout seconds."""
    if not samples:
        return {}
    validator = None
    if json_schema:
        import jsonschema
        validator = jsonschema.Draft202012Validator(json.loads(json_schema))
    pattern = compile_answer_regex(answer_regex) if answer_regex else None
    model.eval()
    scores: dict = {}
    variants = [("", contextlib.nullcontext)]
    if hasattr(model, "disable_adapter"):
        variants.append(("base_", model.disable_adapter))
    for prefix, context in variants:
        exact = compliant = matched = timeouts = 0
        with context():
            for prompt_ids, reference in samples:
                # An answer much longer than the reference is wrong anyway: stop generating there.
                budget = min(max_new_tokens, len(tokenizer(reference, add_special_tokens=False)["input_ids"]) + 16)
                answer = _answer(model, tokenizer, prompt_ids, budget, device)
                exact += answer == reference.strip()
                if json_schema:
                    compliant += json_compliant(answer, validator)
                if pattern:
                    hit = regex_fullmatch(pattern, answer, regex_timeout)
                    matched += bool(hit)
                    timeouts += hit is None
        scores[f"{prefix}exact_match"] = exact / len(samples)
        if json_schema:
            scores[f"{prefix}format_compliance"] = compliant / len(samples)
        if pattern:
            scores[f"{prefix}regex_match"] = matched / len(samples)
            scores[f"{prefix}regex_timeouts"] = timeouts
    model.train()
    return scores


def held_out_prompts(examples, tokenizer, limit: int) -> list:
    """(prompt token ids, reference answer) per validation example: the prompt is everything before the
    first trained token, the reference the first run of trained tokens (the first assistant answer)."""
    out = []
    for k in range(min(limit, len(examples))):
        e = examples[k]
        ids, labels = np.asarray(e.input_ids).tolist(), np.asarray(e.labels).tolist()
        first = next((i for i, x in enumerate(labels) if x != IGNORE), None)
        if first is None:
            continue
        end = next((i for i in range(first, len(labels)) if labels[i] == IGNORE), len(labels))
        out.append((ids[:first], tokenizer.decode(ids[first:end], skip_special_tokens=True)))
    return out


def regression_losses(model, loss_module, examples, batch_size: int, pad_id: int, device) -> dict:
    """Loss on a general-purpose set with the adapter and without: a rise is forgetting."""
    if not examples:
        return {}
    scores = {"regression_loss": eval_loss(loss_module, examples, batch_size, pad_id, device)["eval_loss"]}
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            scores["base_regression_loss"] = eval_loss(loss_module, examples, batch_size, pad_id, device)["eval_loss"]
    return scores
