"""The OpenAI/vLLM wire shapes the reference engine speaks: pure functions, no I/O.

Shapes follow vLLM's OpenAI-compatible server (vllm/entrypoints/openai/models/serving.py and
serve/lora/api_router.py, see docs/inference.md): errors are {"error": {"message", "type", "code"}},
load/unload answer 200 with a plain-text sentence, /v1/models lists the base card then one card
per adapter with `root` = adapter path and `parent` = base model id.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Optional


class RequestError(ValueError):
    """A client error with the vLLM error type and HTTP status to answer with."""

    def __init__(self, message: str, err_type: str = "BadRequestError", status: int = 400):
        super().__init__(message)
        self.err_type = err_type
        self.status = status


def error_body(message: str, err_type: str = "BadRequestError", code: int = 400) -> dict:
    return {"error": {"message": message, "type": err_type, "code": code}}


def model_card(model_id: str, root: str, parent: Optional[str] = None, created: Optional[int] = None,
               max_model_len: Optional[int] = None, **extra) -> dict:
    card = {"id": model_id, "object": "model", "created": created or int(time.time()), "owned_by": "vllm",
            "root": root, "parent": parent, "max_model_len": max_model_len,
            "permission": [{"id": f"modelperm-{uuid.uuid4().hex[:16]}", "object": "model_permission",
                            "allow_sampling": True, "allow_logprobs": True, "allow_view": True,
                            "organization": "*", "is_blocking": False}]}
    card.update(extra)
    return card


def load_success(name: str) -> str:
    return f"Success: LoRA adapter '{name}' added successfully."


def unload_success(name: str) -> str:
    return f"Success: LoRA adapter '{name}' removed successfully."


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: Optional[int] = None
    stop: tuple = ()


def _number(body: dict, key: str, default, kind, low, high):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise RequestError(f"'{key}' must be a {'integer' if kind is int else 'number'} (got {value!r})")
    if not low <= value <= high:
        raise RequestError(f"'{key}' must be between {low} and {high} (got {value})")
    return kind(value)


def sampling_params(body: dict, default_max_tokens: int, max_tokens_limit: int) -> SamplingParams:
    """The request's sampling settings, checked; RequestError names the bad field."""
    if body.get("stream"):
        raise RequestError("'stream': true is not supported by the reference engine (vLLM supports it)")
    if body.get("n", 1) != 1:
        raise RequestError("only 'n': 1 is supported by the reference engine")
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
        raise RequestError("'stop' must be a string or a list of strings")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    return SamplingParams(
        max_tokens=_number({"max_tokens": limit}, "max_tokens", default_max_tokens, int, 1, max_tokens_limit),
        temperature=_number(body, "temperature", 1.0, float, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, float, 1e-6, 1.0),
        seed=_number(body, "seed", None, int, 0, 2**63 - 1),
        stop=tuple(stop))


def chat_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
            raise RequestError(f"messages[{i}].role must be system, user or assistant")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string")
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
    return out


def completion_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("'prompt' must be a string (one prompt per request in the reference engine)")
    return prompt


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_response(model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                                         "stop_reason": None}],
            "usage": _usage(prompt_tokens, completion_tokens)}


def chat_response(model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}],
            "usage": _usage(prompt_tokens, completion_tokens)}


def apply_stop(text: str, stop: tuple) -> tuple[str, bool]:
    """(text cut at the first stop string, whether one was found); the stop string is not returned, as in vLLM."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
