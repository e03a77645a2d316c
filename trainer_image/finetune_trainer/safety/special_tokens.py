"""The model's own special/control tokens written inside dataset text (e.g. `<|im_start|>`).

A row whose content holds a role marker can forge turns: the tokenizer turns the literal text
into the control token, so the model learns to obey injected turns. The set is the tokenizer's
`all_special_tokens`, its added tokens (`get_added_vocab()`), and the markers written in the
chat template's string literals (`<|...|>`, `<...>` tags, `[INST]`-style and `<<SYS>>`-style).
Matching is exact and case-sensitive, as the tokenizer's own matching of added tokens is.
"""
from __future__ import annotations

import re

from .spans import Span

_TEMPLATE_MARKERS = re.compile(r"<\|[^|\s'\"]{1,40}\|>|</?[A-Za-z_][A-Za-z0-9_]{1,30}>|\[/?[A-Z_]{2,20}\]"
                               r"|<</?[A-Z]{2,10}>>")
_TEMPLATE_LITERALS = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def special_tokens_of(tokenizer) -> list:
    """Every control string the tokenizer or its chat template knows, longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    get_added = getattr(tokenizer, "get_added_vocab", None)
    if callable(get_added):
        found |= set(get_added())
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(str(v) for v in template.values())
    if isinstance(template, str):
        for m in _TEMPLATE_LITERALS.finditer(template):
            found |= set(_TEMPLATE_MARKERS.findall(m.group(1) or m.group(2) or ""))
    return sorted((t for t in found if isinstance(t, str) and t.strip()), key=lambda t: (-len(t), t))


class SpecialTokenScanner:
    """`scan(text)` -> one span per control string found, kind = the token itself (vocabulary, not data)."""

    def __init__(self, tokens: list):
        self.tokens = list(tokens)
        self._regex = re.compile("|".join(re.escape(t) for t in self.tokens)) if self.tokens else None
        self._first_chars = frozenset(t[0] for t in self.tokens)

    def scan(self, text: str) -> list:
        if self._regex is None or not any(c in text for c in self._first_chars):
            return []
        return [Span(m.start(), m.end(), m.group()) for m in self._regex.finditer(text)]
