"""The data-safety gate: Contract A (`row`, `text`, `finish`) over the checks in this package.

CONFIG (a plain dict shaped like `spec.dataSafety`; every key optional, these are the defaults).
The SAFETY-INTEGRATION engineer mirrors these names in the CRD schema:

    {
      "pii":            {"action": "Warn",                   # Fail | Redact | Warn | Off
                         "entities": [],                     # [] = pii.DEFAULT_ENTITIES; names from pii.RECOGNIZERS
                         "minScore": 0.4},                   # Presidio score threshold (0..1); phone numbers
                                                             # score 0.4 without NER context, so keep <= 0.4
      "secrets":        {"action": "Warn"},                  # Fail | Redact | Warn | Off
      "specialTokens":  {"action": "Fail"},                  # Fail | Drop | Warn | Off
      "nearDuplicates": {"action": "Warn", "threshold": 0.9},# Drop | Warn | Fail | Off (Jaccard 0..1)
      "leakage":        {"action": "Fail", "threshold": 0.9},# Fail | Drop | Warn | Off (Jaccard 0..1)
      "cleaning":       {"stripHtml": False, "unicodeNfc": False,
                         "dropExactDuplicates": False, "dropNearDuplicates": False},
      "moderation":     {"action": "Off",                    # Fail | Drop | Warn | Off
                         "endpoint": "",                     # the NAME in the admin's list (the CRD)
                         "url": "",                          # resolved by the operator, never by the tenant
                         "timeoutSeconds": 5},
      "maxLinesReported": 10                                 # line numbers kept per check (1..20)
    }

    An absent `dataSafety` (None) means: no gate (the caller passes gate=None); {} runs every check
    with the defaults above. "Off" disables one check.
    cleaning.dropNearDuplicates drops training rows that near-duplicate an earlier training row
    (same as nearDuplicates.action Drop); dropExactDuplicates drops rows identical to an earlier row of
    the same role after cleaning.

REPORT: `gate.report()` (also set as `report.safety` by `finish(report)`), a compact dict that never
holds a matched value:

    {"pii": {"rows": 3, "entities": {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}, "lines": [4, 9, 12],
             "action": "Redact"},
     "secrets": {"rows": 1, "entities": {"AWS_ACCESS_KEY": 1}, "lines": [7], "action": "Fail"},
     "specialTokens": {...}, "nearDuplicates": {...}, "leakage": {..., "trainLines": [..]},
     "cleaning": {"rows": n, "entities": {"stripHtml": n, "unicodeNfc": n, "exactDuplicates": n}, "lines": [..]},
     "moderation": {"rows": n, "entities": {"violence": 1, ...}, ...},
     "changed": {"train": 5},                 # rows kept but transformed, per role (roles with 0 left out)
     "dropped": {"train": 2, "validation": 1}} # rows dropped, per role
    Checks that are Off are absent; checks with nothing found have rows 0 and no lines key.
    `lines`: line numbers (1-based, of the row's own object) in the order rows were fed (training
    object first); `byRole` counts the rows per role when any came from validation/regression.
    Leakage: `lines` are the held-out (validation/regression) rows, `trainLines` the training rows
    they near-duplicate; nearDuplicates: `lines` the later rows, `trainLines` the earlier ones.
    Each list is capped at maxLinesReported; `entities` keeps the 12 largest counts.

TRANSFORMED COPY: when the config has any transforming action (Redact, Drop, a cleaning option),
the gate writes every kept row (transformed or not) of each role as JSONL to
`<work_dir>/safety-copy/<role>.jsonl`: `{"messages": [...]}` for chat-shaped rows, `{"text": ...}`
for text rows. After `finish`, `gate.copy_paths()` maps each role in which a row was changed or
dropped to its file (unchanged roles' files are deleted; a role whose every row was dropped has an
empty file). The caller converts, uploads and trains
on the copies (derived.py).

CHECK ORDER per row: cleaning -> specialTokens -> nearDuplicates (training) / leakage (held-out) ->
exact duplicates -> secrets -> pii -> moderation. A dropped row is not checked further. Near- and
exact-duplicate keys are taken after cleaning and before redaction.

FAILURE: a Fail action raises TrainerFailure(ExitCode.DATASET_UNSAFE, "data-safety: ...") in `finish`
(after every row was seen, so the counts are complete), naming checks, counts and first lines only.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import re
from pathlib import Path
from typing import Optional

from ..outcomes import ExitCode, TrainerFailure

ACTIONS = {"pii": ("Fail", "Redact", "Warn", "Off"), "secrets": ("Fail", "Redact", "Warn", "Off"),
           "specialTokens": ("Fail", "Drop", "Warn", "Off"), "nearDuplicates": ("Fail", "Drop", "Warn", "Off"),
           "leakage": ("Fail", "Drop", "Warn", "Off"), "moderation": ("Fail", "Drop", "Warn", "Off")}
DEFAULT_ACTIONS = {"pii": "Warn", "secrets": "Warn", "specialTokens": "Fail", "nearDuplicates": "Warn",
                   "leakage": "Fail", "moderation": "Off"}
CLEANING = ("stripHtml", "unicodeNfc", "dropExactDuplicates", "dropNearDuplicates")
DEFAULT_THRESHOLD, DEFAULT_MIN_SCORE, DEFAULT_MAX_LINES, MAX_LINES = 0.9, 0.4, 10, 20
MAX_ENTITIES = 12
# The order checks appear in the report and in a failure message.
CHECKS = ("pii", "secrets", "specialTokens", "nearDuplicates", "leakage", "cleaning", "moderation")
_NOUNS = {"pii": "PII finding", "secrets": "secret", "specialTokens": "special-token row",
          "nearDuplicates": "near-duplicate row", "leakage": "held-out row leaking training data",
          "cleaning": "cleaned row", "moderation": "flagged row"}


@dataclasses.dataclass(frozen=True)
class Settings:
    actions: dict
    cleaning: dict
    thresholds: dict
    entities: tuple
    min_score: float
    max_lines: int
    moderation_url: str
    moderation_name: str
    moderation_timeout: float

    @property
    def transforms(self) -> bool:
        """Whether any row can be changed or dropped (then the gate writes copies)."""
        return (any(a in ("Redact", "Drop") for a in self.actions.values())
                or any(self.cleaning.values()))


def settings(config: Optional[dict]) -> Settings:
    """spec.dataSafety (a plain dict, every key optional) -> Settings; ValueError names the bad field."""
    config = config or {}
    actions = {}
    for check, allowed in ACTIONS.items():
        action = (config.get(check) or {}).get("action", DEFAULT_ACTIONS[check])
        if action not in allowed:
            raise ValueError(f"spec.dataSafety.{check}.action must be one of {', '.join(allowed)}")
        actions[check] = action
    cleaning = {k: bool((config.get("cleaning") or {}).get(k, False)) for k in CLEANING}
    thresholds = {c: float((config.get(c) or {}).get("threshold", DEFAULT_THRESHOLD)) for c in ("nearDuplicates", "leakage")}
    for check, value in thresholds.items():
        if not 0.0 < value <= 1.0:
            raise ValueError(f"spec.dataSafety.{check}.threshold must be in (0, 1]")
    pii, moderation = config.get("pii") or {}, config.get("moderation") or {}
    if actions["moderation"] != "Off" and not moderation.get("url"):
        raise ValueError("spec.dataSafety.moderation: no endpoint URL was resolved for "
                         f"{moderation.get('endpoint') or '(no endpoint named)'}")
    max_lines = int(config.get("maxLinesReported", DEFAULT_MAX_LINES))
    return Settings(actions, cleaning, thresholds, tuple(pii.get("entities") or ()),
                    float(pii.get("minScore", DEFAULT_MIN_SCORE)), max(1, min(MAX_LINES, max_lines)),
                    str(moderation.get("url") or ""), str(moderation.get("endpoint") or ""),
                    float(moderation.get("timeoutSeconds", 5)))


class Tally:
    """One check's counts: rows hit, findings by type, the first line numbers (never a value)."""

    def __init__(self, action: Optional[str], max_lines: int):
        self.action, self.max_lines, self.rows = action, max_lines, 0
        self.entities, self.by_role = collections.Counter(), collections.Counter()
        self.lines, self.train_lines = [], []

    def hit(self, role: str, line: int, kinds=(), train_line: Optional[int] = None) -> None:
        self.rows += 1
        self.by_role[role] += 1
        self.entities.update(kinds)
        if len(self.lines) < self.max_lines:
            self.lines.append(line)
        if train_line is not None and len(self.train_lines) < self.max_lines:
            self.train_lines.append(train_line)

    def doc(self) -> dict:
        out = {"action": self.action, "rows": self.rows} if self.action else {"rows": self.rows}
        if self.entities:
            out["entities"] = dict(sorted(self.entities.most_common(MAX_ENTITIES)))
        if self.lines:
            out["lines"] = list(self.lines)
        if self.train_lines:
            out["trainLines"] = list(self.train_lines)
        if set(self.by_role) - {"train"}:
            out["byRole"] = dict(sorted(self.by_role.items()))
        return out


def _token_name(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "", token)[:64] or "token"


def _lines_text(lines: list, rows: int) -> str:
    shown = ", ".join(map(str, lines))
    more = f" (+{rows - len(lines)} more)" if rows > len(lines) else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}" if lines else "no line recorded"


def describe(safety: dict, only: Optional[tuple] = None) -> str:
    """'3 PII findings (EMAIL_ADDRESS 2, PHONE_NUMBER 1) in 2 rows at lines 4, 9; ...': counts and lines only."""
    parts = []
    for check in CHECKS:
        doc = safety.get(check)
        if not doc or not doc.get("rows") or (only is not None and check not in only):
            continue
        entities = doc.get("entities") or {}
        found = sum(entities.values()) if check in ("pii", "secrets") else doc["rows"]
        noun = _NOUNS[check] + ("s" if found != 1 else "")
        kinds = f" ({', '.join(f'{k} {v}' for k, v in entities.items())})" if entities else ""
        rows = f" in {doc['rows']} row{'s' if doc['rows'] != 1 else ''}" if check in ("pii", "secrets") else ""
        parts.append(f"{found} {noun}{kinds}{rows} at {_lines_text(doc.get('lines') or [], doc['rows'])}"
                     + (f" (training {_lines_text(doc['trainLines'], doc['rows'])})" if doc.get("trainLines") else ""))
    return "; ".join(parts)


class Gate:
    """Contract A over the checks: `row`/`text` per row in file order, then `finish(report)`."""

    def __init__(self, config: Optional[dict], tokenizer, work_dir: Optional[str] = None):
        try:
            self.settings = s = settings(config)
            self._build(s, tokenizer)
        except ValueError as err:
            raise TrainerFailure(ExitCode.INVALID_CONFIG, str(err)) from None
        self.tallies = {c: Tally(s.actions.get(c), s.max_lines) for c in CHECKS
                        if s.actions.get(c) != "Off" and (c != "cleaning" or any(s.cleaning.values()))}
        self._copy_dir = Path(work_dir or ".") / "safety-copy"
        self._files, self._changed, self._dropped = {}, collections.Counter(), collections.Counter()
        self._opened: set = set()
        self._exact: dict = collections.defaultdict(set)

    def _build(self, s: Settings, tokenizer) -> None:
        from . import cleaning
        self._cleaning = cleaning
        on = {c for c, a in s.actions.items() if a != "Off"}
        self._pii = self._secrets = self._special = self._index = self._moderator = None
        if "pii" in on:
            from .pii import PiiScanner
            self._pii = PiiScanner(s.entities, s.min_score)
        if "secrets" in on:
            from .secrets import SecretScanner
            self._secrets = SecretScanner()
        if "specialTokens" in on:
            from .special_tokens import SpecialTokenScanner, special_tokens_of
            self._special = SpecialTokenScanner(special_tokens_of(tokenizer) if tokenizer is not None else [])
        if {"nearDuplicates", "leakage"} & on or s.cleaning["dropNearDuplicates"]:
            from .near_duplicates import NearDuplicateIndex
            # one index: leakage and near-duplicates share the training rows' signatures; its bands are
            # laid out for the lower of the two thresholds, and each match is checked against its own
            used = [s.thresholds[c] for c in ("nearDuplicates", "leakage") if c in on] or [s.thresholds["nearDuplicates"]]
            self._index = NearDuplicateIndex(min(used))
        if "moderation" in on:
            from .moderation import Moderator
            self._moderator = Moderator(s.moderation_url, s.moderation_timeout)

    # --- Contract A ------------------------------------------------------------------------
    def row(self, role: str, line: int, messages: list) -> Optional[list]:
        contents = [m["content"] for m in messages]
        prompt_idx = [i for i, m in enumerate(messages) if m["role"] == "user"] or list(range(len(messages)))
        out = self._check(role, line, contents, prompt_idx)
        if out is None:
            return self._drop(role)
        kept = messages if out == contents else [{**m, "content": c} for m, c in zip(messages, out)]
        self._keep(role, {"messages": kept}, kept is not messages)
        return kept

    def text(self, role: str, line: int, text: str) -> Optional[str]:
        out = self._check(role, line, [text], [0])
        if out is None:
            return self._drop(role)
        self._keep(role, {"text": out[0]}, out[0] != text)
        return out[0]

    def finish(self, report) -> None:
        """Adds `safety` to the report, keeps the copies of changed roles, raises on any Fail."""
        for f in self._files.values():
            f.close()
        self._files = {}
        for role in list(self._written_roles()):
            if not (self._changed[role] or self._dropped[role]):
                (self._copy_dir / f"{role}.jsonl").unlink(missing_ok=True)
        doc = self.report()
        report.safety = doc
        failed = tuple(c for c, t in self.tallies.items() if t.action == "Fail" and t.rows)
        if failed:
            names = ", ".join(f"spec.dataSafety.{c}" for c in failed)
            raise TrainerFailure(ExitCode.DATASET_UNSAFE, f"data-safety ({names} action Fail): {describe(doc, failed)}",
                                 stats={**report.summary(), "safety": doc})

    def report(self) -> dict:
        doc = {c: t.doc() for c, t in self.tallies.items()}
        roles = ("train", "validation", "regression")
        doc["changed"] = {r: self._changed[r] for r in roles if self._changed[r]}
        doc["dropped"] = {r: self._dropped[r] for r in roles if self._dropped[r]}
        return doc

    def copy_paths(self) -> dict:
        """role -> local JSONL copy, for each role in which a row was changed or dropped (after finish)."""
        return {r: str(self._copy_dir / f"{r}.jsonl") for r in self._written_roles()
                if self._changed[r] or self._dropped[r]}

    # --- the copy --------------------------------------------------------------------------
    def _written_roles(self) -> list:
        return sorted(self._opened)

    def _file(self, role: str):
        """The role's copy, opened on its first row (so a role whose every row is dropped has an empty copy)."""
        f = self._files.get(role)
        if f is None:
            self._copy_dir.mkdir(parents=True, exist_ok=True)
            f = self._files[role] = open(self._copy_dir / f"{role}.jsonl", "w", encoding="utf-8")
            self._opened.add(role)
        return f

    def _drop(self, role: str) -> None:
        self._dropped[role] += 1
        if self.settings.transforms:
            self._file(role)
        return None

    def _keep(self, role: str, row: dict, changed: bool) -> None:
        self._changed[role] += changed
        if not self.settings.transforms:
            return
        f = self._file(role)
        try:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        except UnicodeEncodeError:  # a lone surrogate (a JSON \ud800 escape) only survives as an escape
            f.write(json.dumps(row) + "\n")

    # --- the checks, in order --------------------------------------------------------------
    def _check(self, role: str, line: int, contents: list, prompt_idx: list) -> Optional[list]:
        """The row's contents after every check, or None when an action drops it."""
        contents = self._clean(role, line, contents)
        if self._special is not None and not self._special_tokens(role, line, contents):
            return None
        if self._index is not None and not self._duplicates(role, line, "\n".join(contents[i] for i in prompt_idx)):
            return None
        if self.settings.cleaning["dropExactDuplicates"] and not self._exact_duplicate(role, line, contents):
            return None
        if self._secrets is not None:
            contents = self._redact("secrets", self._secrets, role, line, contents)
        if self._pii is not None:
            contents = self._redact("pii", self._pii, role, line, contents)
        if self._moderator is not None and not self._moderate(role, line, contents):
            return None
        return contents

    def _clean(self, role: str, line: int, contents: list) -> list:
        c, ops = self.settings.cleaning, collections.Counter()
        out = []
        for text in contents:
            if c["stripHtml"]:
                stripped = self._cleaning.strip_html(text)
                ops["stripHtml"] += stripped != text
                text = stripped
            if c["unicodeNfc"]:
                normal = self._cleaning.nfc(text)
                ops["unicodeNfc"] += normal != text
                text = normal
            out.append(text)
        if +ops:
            self.tallies["cleaning"].hit(role, line, [k for k, v in ops.items() if v])
        return out

    def _special_tokens(self, role: str, line: int, contents: list) -> bool:
        """False when the row is dropped."""
        found = [sp.kind for text in contents for sp in self._special.scan(text)]
        if not found:
            return True
        tally = self.tallies["specialTokens"]
        tally.hit(role, line, [_token_name(k) for k in found])
        return tally.action != "Drop"

    def _duplicates(self, role: str, line: int, prompt: str) -> bool:
        """Near-duplicates within training, leakage from held-out rows; False when the row is dropped."""
        signed = self._index.signature(prompt)
        check = "nearDuplicates" if role == "train" else "leakage"
        tally = self.tallies.get(check)
        drop = (tally is not None and tally.action == "Drop") or (
            role == "train" and self.settings.cleaning["dropNearDuplicates"])
        earlier = self._index.match(signed, self.settings.thresholds[check]) if (tally or drop) else None
        if earlier is not None:
            if tally is not None:
                tally.hit(role, line, train_line=earlier)
            if drop:
                return False
        if role == "train" and earlier is None:
            self._index.add(signed, line)
        return True

    def _exact_duplicate(self, role: str, line: int, contents: list) -> bool:
        key = self._cleaning.exact_key(contents)
        seen = self._exact[role]
        if key in seen:
            self.tallies["cleaning"].hit(role, line, ["exactDuplicates"])
            return False
        seen.add(key)
        return True

    def _redact(self, check: str, scanner, role: str, line: int, contents: list) -> list:
        from .spans import redact
        found = [scanner.scan(text) for text in contents]
        kinds = [sp.kind for spans in found for sp in spans]
        if not kinds:
            return contents
        tally = self.tallies[check]
        tally.hit(role, line, kinds)
        if tally.action != "Redact":
            return contents
        return [redact(text, spans) for text, spans in zip(contents, found)]

    def _moderate(self, role: str, line: int, contents: list) -> bool:
        from .moderation import ModerationUnavailable
        try:
            flagged, categories = self._moderator.check("\n".join(contents))
        except ModerationUnavailable as err:
            raise TrainerFailure(ExitCode.TRAINER_ERROR, f"data-safety: moderation endpoint "
                                 f"{self.settings.moderation_name or '(unnamed)'} at line {line} of the {role} data: "
                                 f"{err}") from None
        if not flagged:
            return True
        tally = self.tallies["moderation"]
        tally.hit(role, line, categories)
        return tally.action != "Drop"
