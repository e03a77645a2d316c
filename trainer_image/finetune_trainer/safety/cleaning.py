"""Cleaning: HTML tags stripped, Unicode NFC, and exact-duplicate keys.

Only real HTML is stripped: comments, <script>/<style> blocks with their content, and tags whose
name is an HTML element (so `List<String>`, `a < b`, a chat template's `<|im_start|>` and the
`<EMAIL_ADDRESS>` placeholders of redaction are left alone). Block-level tags become a newline,
others nothing; entities (`&amp;`) are unescaped only in a text that had a tag.
"""
from __future__ import annotations

import hashlib
import html
import re
import unicodedata

_ELEMENTS = ("a|abbr|address|article|aside|audio|b|blockquote|body|br|button|canvas|caption|center|cite|code|"
             "col|colgroup|dd|del|details|div|dl|dt|em|embed|fieldset|figcaption|figure|font|footer|form|"
             "h[1-6]|head|header|hr|html|i|iframe|img|input|ins|kbd|label|li|link|main|mark|meta|nav|noscript|"
             "object|ol|option|p|param|pre|q|section|select|small|source|span|strong|sub|summary|sup|svg|"
             "table|tbody|td|textarea|tfoot|th|thead|time|title|tr|tt|u|ul|video|wbr")
_BLOCK = frozenset("address article aside blockquote br div dl dt dd footer form h1 h2 h3 h4 h5 h6 header hr li "
                   "main nav ol p pre section table tr ul".split())
_HTML = re.compile(r"<!--.*?-->|<(script|style)\b[^>]*>.*?</\1\s*>|</?(" + _ELEMENTS + r")\b(?:\s[^<>]{0,2000})?/?>",
                   re.I | re.S)


def _replace(match: re.Match) -> str:
    name = (match.group(2) or "").lower()
    return "\n" if name in _BLOCK else ""


def strip_html(text: str) -> str:
    if "<" not in text:
        return text
    stripped, n = _HTML.subn(_replace, text)
    return html.unescape(stripped) if n else text


def nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def exact_key(parts: list) -> int:
    """A 64-bit digest of a row's contents (8 bytes kept per row for exact-duplicate dropping)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "little")
