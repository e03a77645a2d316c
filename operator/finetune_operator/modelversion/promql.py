"""Pure: scoping a tenant's PromQL to the tenant's namespace.

Every vector and matrix selector of the query gets the matcher `<label>="<namespace>"` (label: the
operator's FTO_PROMETHEUS_NAMESPACE_LABEL, default `namespace`). Matchers inside one selector are
ANDed, so an added equality matcher can only narrow what a selector reads: `or`, `{__name__=~".+"}`,
subqueries, offsets and `@` all stay inside the namespace. A selector that already matches the
namespace label any other way than `="<namespace>"` is refused, as is anything this lexer cannot
place (it follows Prometheus's lexer: strings, comments, durations, keywords are case-insensitive).

Why our own lexer: PyPI's promql-parser (GreptimeTeam's Rust parser) parses but cannot print a
rewritten query, and the operator would need a compiled wheel; injection needs only the lexical
structure, and refusing what it does not recognise keeps it sound.
"""
from __future__ import annotations

import re

AGGREGATORS = frozenset({"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
                         "count_values", "quantile", "limitk", "limit_ratio"})
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
BINARY = frozenset({"and", "or", "unless", "atan2", "bool"})
NUMBERS = frozenset({"inf", "nan"})

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+\b)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@:])
""", re.VERBOSE)


_SUBQUERY_STEP = re.compile(r"^:(?:[0-9]+(?:ms|[smhdwy]))*$")   # [10m:1m] lexes "1m" glued to the colon


class Unscoped(Exception):
    """The query cannot be proven to read only the tenant's namespace (message: plain words, no secrets)."""


def tokens(query: str) -> list:
    """(kind, text) pairs; comments are dropped (they could hide nothing, but they end at a newline)."""
    out, pos = [], 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m:
            raise Unscoped(f"cannot read the query at character {pos + 1} ({query[pos:pos + 10]!r})")
        if m.lastgroup != "comment":
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def _next(toks: list, i: int) -> int:
    """Index of the next token that is not whitespace (len(toks) at the end)."""
    while i < len(toks) and toks[i][0] == "space":
        i += 1
    return i


def _skip_group(toks: list, i: int, close: str) -> int:
    """toks[i] opens a (...) label list or [...] range: the index after its closing token. Only label
    names, commas, durations and numbers may be inside (nothing there is a selector)."""
    j = i + 1
    allowed = {"space", "ident", "duration", "number"} if close == ")" else {"space", "duration", "number"}
    while j < len(toks) and toks[j][1] != close:
        kind, text = toks[j]
        if kind not in allowed and text not in (",", ":", "-", "+") and not _SUBQUERY_STEP.match(text):
            raise Unscoped(f"unexpected {text!r} inside {toks[i][1]}...{close}")
        j += 1
    if j == len(toks):
        raise Unscoped(f"unclosed {toks[i][1]}")
    return j + 1


def _matchers(toks: list, i: int, label: str, namespace: str) -> tuple:
    """toks[i] is '{': (index after '}', whether it already holds exactly label="namespace")."""
    j, has = _next(toks, i + 1), False
    while j < len(toks) and toks[j][1] != "}":
        name_kind, name = toks[j]
        k = _next(toks, j + 1)
        v = _next(toks, k + 1)
        if name_kind != "ident" or k >= len(toks) or toks[k][1] not in ("=", "!=", "=~", "!~") or \
                v >= len(toks) or toks[v][0] != "string":
            raise Unscoped("a selector's matchers must each be label, operator (=, !=, =~, !~) and a quoted string")
        if name == label:
            if toks[k][1] != "=" or toks[v][1][1:-1] != namespace:
                raise Unscoped(f"selectors may only match {label}=\"{namespace}\" (this namespace); found "
                               f"{name}{toks[k][1]}{toks[v][1]}")
            has = True
        j = _next(toks, v + 1)
        if j < len(toks) and toks[j][1] == ",":
            j = _next(toks, j + 1)
        elif j < len(toks) and toks[j][1] != "}":
            raise Unscoped(f"unexpected {toks[j][1]!r} in a selector")
    if j >= len(toks):
        raise Unscoped("unclosed {")
    return j + 1, has


def scope(query: str, namespace: str, label: str = "namespace") -> str:
    """The query with `label="namespace"` in every selector; Unscoped when that cannot be proven.

    `operand` says whether the grammar expects an operand next (start, after '(', ',' or an operator):
    there a keyword not followed by '(' (sum, by, offset, and, ...) is a metric name, as in Prometheus."""
    toks, out, i, operand = tokens(query), [], 0, True
    matcher = f'{label}="{namespace}"'
    while i < len(toks):
        kind, text = toks[i]
        low, nxt = text.lower(), _next(toks, i + 1)
        following = toks[nxt][1].lower() if nxt < len(toks) else ""
        if kind == "space":
            out.append(text)
            i += 1
        elif kind == "ident" and low in LABEL_LISTS and following == "(":
            end = _skip_group(toks, nxt, ")")
            out.append("".join(t for _, t in toks[i:end]))
            i, operand = end, low in ("group_left", "group_right") or (operand and low in ("by", "without"))
        elif kind == "ident" and low in ("group_left", "group_right"):
            out.append(text)
            i, operand = i + 1, True
        elif kind == "ident" and operand and following == "(":
            out.append(text)          # a function call or an aggregation
            i += 1
        elif kind == "ident" and operand and low in AGGREGATORS and following in ("by", "without"):
            out.append(text)          # sum by (...) (...): the label list comes next
            i += 1
        elif kind == "ident" and (low == "bool" or (not operand and low in BINARY | {"offset"})):
            out.append(text)
            i, operand = i + 1, low != "offset"
        elif kind == "ident" and low in NUMBERS:
            out.append(text)
            i, operand = i + 1, False
        elif kind == "ident" or text == "{":
            i, operand = _selector(toks, i, kind == "ident", out, matcher, label, namespace), False
        elif text == "[":
            end = _skip_group(toks, i, "]")
            out.append("".join(t for _, t in toks[i:end]))
            i, operand = end, False
        elif text in ("}", "]"):
            raise Unscoped(f"unexpected {text}")
        else:
            out.append(text)
            i, operand = i + 1, kind == "op" and text != ")"
    return "".join(out)


def _selector(toks: list, i: int, named: bool, out: list, matcher: str, label: str, namespace: str) -> int:
    """Writes one selector (metric name and/or {matchers}) with the namespace matcher; the next index."""
    if named:
        out.append(toks[i][1])
        brace = _next(toks, i + 1)
        if brace >= len(toks) or toks[brace][1] != "{":
            out.append("{" + matcher + "}")
            return i + 1
        out.append("".join(t for _, t in toks[i + 1:brace]))
        i = brace
    end, has = _matchers(toks, i, label, namespace)
    inner = "".join(t for _, t in toks[i + 1:end - 1])
    if has:
        out.append("{" + inner + "}")
    elif inner.strip():
        out.append("{" + matcher + "," + inner + "}")
    else:
        out.append("{" + matcher + "}")
    return end
