"""Spans found in a text, and replacing them with `<TYPE>` placeholders (shared by pii and secrets)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # the entity or secret type; never the matched value


def redact(text: str, spans: list) -> str:
    """Replaces each span with `<KIND>`; overlapping spans merge into the first one's placeholder."""
    if not spans:
        return text
    out, pos = [], 0
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if span.end <= pos:
            continue
        start = max(span.start, pos)
        if start == pos and out and span.start < pos:
            pos = span.end  # extends the previous placeholder
            continue
        out.append(text[pos:start])
        out.append(f"<{span.kind}>")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)
