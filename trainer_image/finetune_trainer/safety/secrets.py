"""Secrets: detect-secrets' plugins run on strings in memory (no files, no baseline).

The regex plugins' `denylist` patterns are matched with `finditer` so the span can be redacted;
the span is widened to the whole token around it (the plugins' capture groups are sometimes only
a prefix, e.g. GitHub's `ghp`). A private key is redacted from its BEGIN line to its END line.
The keyword plugin (`password = "..."`) finds only the value, which is then located in the text.
High-entropy strings: detect-secrets' own Shannon entropy with its default limits (base64 4.5,
hex 3.0) on unquoted tokens of at least MIN_ENTROPY_LENGTH characters holding a digit and a letter;
with 4.5 bits a token needs more than 22 distinct characters, so words and ordinary ids never trip it.
Each plugin has literal triggers (lowercase substrings its patterns cannot match without), so a
row without any of them skips it. The public-IP plugin is not used (the pii check finds IPs).
"""
from __future__ import annotations

import re

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString

from .spans import Span

# secret type -> (lowercase literals one of which every match contains, or None; the shortest run of
# [A-Za-z0-9_/+=-] characters every match contains). Both are necessary conditions read off the
# plugins' patterns, so skipping a plugin when either fails never misses a match.
TRIGGERS = {
    "AWS Access Key": (("a3t", "abia", "acca", "akia", "asia", "aws"), 20),
    "Artifactory Credentials": (("akc", "ap"), 11),
    "Azure Storage Account access key": (("accountkey=",), 88),
    "Basic Auth Credentials": (("://",), 0),
    "Cloudant Credentials": (("key", "pw", "pass", "token", "cloudant"), 24),
    "Discord Bot Token": ((".",), 24),
    "GitHub Token": (("gh",), 40),
    "GitLab Token": (("gl", "gr1348941"), 20),
    "IBM COS HMAC Credentials": (("secret",), 48),
    "IBM Cloud IAM Key": (("key", "pw", "pass", "token"), 44),
    "JSON Web Token": (("eyj",), 0),
    "Mailchimp Access Key": (("-us",), 32),
    "NPM tokens": (("_authtoken",), 0),
    "OpenAI Token": (("t3blbkfj",), 20),
    "Private Key": (("private key", "putty"), 0),
    "PyPI Token": (("pypi-",), 70),
    "SendGrid API Key": (("sg.",), 43),
    "Slack Token": (("xox", "hooks.slack.com"), 0),
    "SoftLayer Credentials": (("key", "pw", "pass", "token", "softlayer"), 24),
    "Square OAuth Secret": (("sq0csp-",), 43),
    "Stripe Access Key": (("k_live_",), 32),
    "Telegram Bot Token": ((":",), 35),
    "Twilio API Key": (("ac", "sk"), 34),
    "Secret Keyword": (("key", "pass", "pwd", "secret", "contrase"), 0),  # needs a quote too (see scan)
}
SKIPPED = {"Public IP (ipv4)", "Base64 High Entropy String", "Hex High Entropy String"}
MIN_ENTROPY_LENGTH = 20
_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-]{%d,}" % MIN_ENTROPY_LENGTH)
_PEM = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)"
                  r"|PuTTY-User-Key-File-\d.*?(?:Private-MAC: *\S+|\Z)", re.S)
_RUN = re.compile(r"[A-Za-z0-9_/+=\-]{11,}")
_DIGIT, _ALPHA = re.compile(r"\d"), re.compile(r"[A-Za-z]")


def _plugins() -> list:
    out = []
    for secret_type, cls in sorted(get_mapping_from_secret_type_to_class().items()):
        if secret_type not in SKIPPED:
            out.append((secret_type, cls(), TRIGGERS.get(secret_type, (None, 0))))
    return out


_TOKEN_CHAR = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=_-.:@%&?#~!$*")


def _overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def kind_of(secret_type: str) -> str:
    """'AWS Access Key' -> 'AWS_ACCESS_KEY' (the placeholder and the report's entity name)."""
    return re.sub(r"[^A-Z0-9]+", "_", secret_type.upper()).strip("_")


def _widen(text: str, start: int, end: int) -> tuple:
    """The whole token around [start, end): stops at spaces, quotes and brackets."""
    while start > 0 and text[start - 1] in _TOKEN_CHAR:
        start -= 1
    while end < len(text) and text[end] in _TOKEN_CHAR:
        end += 1
    return start, end


class SecretScanner:
    """`scan(text)` -> spans of the secrets detect-secrets' plugins find, each widened to its token."""

    def __init__(self):
        self._plugins = _plugins()
        self._b64, self._hex = Base64HighEntropyString(), HexHighEntropyString()

    def scan(self, text: str) -> list:
        lowered, spans = text.lower(), []
        longest = max(map(len, _RUN.findall(text)), default=0)
        for secret_type, plugin, (literals, min_run) in self._plugins:
            if longest < min_run or (literals is not None and not any(t in lowered for t in literals)):
                continue
            kind = kind_of(secret_type)
            if secret_type == "Private Key":
                spans += [Span(m.start(), m.end(), kind) for m in _PEM.finditer(text)]
            elif secret_type == "Secret Keyword":
                if not (any(q in text for q in "'\"`") and any(op in text for op in ":=;")):
                    continue  # for a .txt file the keyword patterns need a quoted value after : = or before ;
                spans += self._keyword(plugin, text, kind)
            else:
                for regex in plugin.denylist:
                    spans += [Span(*_widen(text, m.start(), m.end()), kind) for m in regex.finditer(text)]
        typed = spans
        spans = spans + [e for e in self._high_entropy(text) if not any(_overlaps(e, t) for t in typed)]
        return spans

    @staticmethod
    def _keyword(plugin, text: str, kind: str) -> list:
        spans = []
        for found in plugin.analyze_line(filename="dataset.txt", line=text, line_number=0):
            value = found.secret_value or ""
            at = text.find(value) if value else -1
            while at >= 0:
                spans.append(Span(*_widen(text, at, at + len(value)), kind))
                at = text.find(value, at + len(value))
        return spans

    def _high_entropy(self, text: str) -> list:
        spans = []
        for m in _TOKEN.finditer(text):
            token = m.group()
            if not (_DIGIT.search(token) and _ALPHA.search(token)):
                continue
            is_hex = all(c in "0123456789abcdefABCDEF" for c in token)
            plugin = self._hex if is_hex else self._b64
            if plugin.calculate_shannon_entropy(token) > plugin.entropy_limit:
                spans.append(Span(m.start(), m.end(), "HIGH_ENTROPY_STRING"))
        return spans
