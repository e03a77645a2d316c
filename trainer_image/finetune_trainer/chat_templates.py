"""Chat templates rendered in plain Python, for the Jinja sources we know.

Rendering a chat template through Jinja's sandbox costs ~70 µs per call, and masking the prompt needs
two renders per assistant turn: at 1 M rows that is most of a validation pass. For a template whose
source is one of the shapes below (ChatML, with or without a default system message: SmolLM2 and
its family), `python_renderer` returns a function that builds the same string by concatenation.
Exactness rests on the source matching the known program character for character (a fullmatch on
the whole template with one hole, a plain-text default system message), and data.Encoder also
compares it with apply_chat_template on a probe before using it; tests compare them on generated
conversations. Any other template: None, and Jinja renders it.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

# SmolLM2-*-Instruct: ChatML with a default system message when the first message is not one.
_CHATML_DEFAULT_SYSTEM = re.compile(re.escape(
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n") + r"(?P<system>[^'\\{}%]*)" + re.escape(
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"))

# Plain ChatML (no default system message).
_CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
           "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def python_renderer(template: Optional[str]) -> Optional[Callable[[list, bool], str]]:
    """render(messages, add_generation_prompt) -> str for a known template source, else None."""
    if not isinstance(template, str):
        return None
    if template == _CHATML:
        return lambda messages, gen: chatml(messages, gen, None)
    found = _CHATML_DEFAULT_SYSTEM.fullmatch(template)
    if found:
        system = found.group("system")
        return lambda messages, gen: chatml(messages, gen, system)
    return None


def chatml(messages: list, add_generation_prompt: bool, default_system: Optional[str]) -> str:
    parts = []
    if default_system is not None and messages and messages[0]["role"] != "system":
        parts.append("<|im_start|>system\n" + default_system + "<|im_end|>\n")
    for m in messages:
        parts.append("<|im_start|>" + m["role"] + "\n" + m["content"] + "<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)
