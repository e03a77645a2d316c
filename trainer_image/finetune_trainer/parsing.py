"""Any bytes in, a clear answer out: one JSON Lines row (bytes) to a record or a problem naming the line.

reading.py streams the lines; this module decides, for each, what it is. Nothing here raises on
malformed input: a row is either a non-empty JSON object or a message that says what is wrong and
where (line, and byte offsets for bytes that are not UTF-8). A file that is not text at all (gzip,
zstd, bzip2, xz, zip, Parquet, UTF-16) is recognised by its first bytes, so the user is told what it
looks like instead of getting one error per line.

What is refused, and why:
- bytes that are not UTF-8, and NUL bytes (binary data inside a text file);
- nesting deeper than MAX_DEPTH arrays/objects (a cheap pre-scan of bracket depth outside strings,
  before the parser recurses);
- NaN, Infinity and -Infinity: Python's json accepts them, JSON (RFC 8259) does not, nor do most other
  tools that would read the same file;
- strings holding a lone UTF-16 surrogate escape (e.g. "\\ud800"): not Unicode, tokenizers fail on them;
- a value that is not an object, and the empty object {}.
"""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Iterator, Optional

MAX_DEPTH = 64
UTF8_BOM = b"\xef\xbb\xbf"
_HEAD = 8  # bytes enough to recognise every signature below

# (first bytes, what the file looks like, what to do)
_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data", "decompress it (gunzip) and upload the plain .jsonl"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", "decompress it (unzstd) and upload the plain .jsonl"),
    (b"BZh", "bzip2-compressed data", "decompress it (bunzip2) and upload the plain .jsonl"),
    (b"\xfd7zXZ\x00", "xz-compressed data", "decompress it (unxz) and upload the plain .jsonl"),
    (b"PK\x03\x04", "a zip archive", "unzip it and upload the .jsonl inside"),
    (b"PAR1", "a Parquet file", "name it .parquet or set spec.dataset.fileFormat: parquet"),
    (b"\xff\xfe", "UTF-16 (or UTF-32) text", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"),
    (b"\x00\x00\xfe\xff", "UTF-32 text", "save it as UTF-8"),
)

# A JSON string, possessive so it never backtracks; an unterminated one runs to the end of the line.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 once read as signed bytes
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


def looks_like(head: bytes) -> Optional[tuple[str, str]]:
    """(what the file looks like, what to do) when its first bytes are not JSON Lines text, else None."""
    for magic, what, fix in _SIGNATURES:
        if head.startswith(magic):
            return what, fix
    return None


def sniffed(chunks, on_signature) -> Iterator[bytes]:
    """The same chunks; on_signature(what, fix) is called (and should raise) when the first bytes match."""
    head = b""
    for chunk in chunks:
        if head is None:
            yield chunk
            continue
        head += chunk
        if len(head) >= _HEAD:
            found = looks_like(head)
            if found:
                on_signature(*found)
            yield head
            head = None
    if head:
        found = looks_like(head)
        if found:
            on_signature(*found)
        yield head


def nesting_depth(raw: bytes, limit: int = MAX_DEPTH) -> int:
    """The depth of arrays/objects in a JSON line, counted outside strings; exact when over limit
    (0 is returned when it cannot be over: fewer opening brackets than the limit)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return 0
    return max(accumulate(memoryview(brackets.translate(_SIGNS)).cast("b")), default=0)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON: write null or a string")


def _reason(err: ValueError) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg.removesuffix(' at')} at column {err.colno}"  # json says "Unterminated string starting at"
    return str(err).split(";")[0][:200]  # e.g. Python's 4300-digit cap on integers


def _lone_surrogate(value) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def _decoded(raw: bytes, line: int, offset: int) -> tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, problem) for one line's bytes starting at byte `offset` of the file."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        return None, (f"line {line}: a NUL byte at offset {nul} in the line ({offset + nul} in the file): "
                      "binary data in a text file?")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, (f"line {line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start} in the "
                      f"line, {offset + err.start} in the file: {err.reason})")


def parse_row(raw: bytes, line: int, offset: int, max_depth: int = MAX_DEPTH) -> tuple[Optional[dict], Optional[str]]:
    """(record, None) for a non-empty JSON object, else (None, a problem naming the line). raw is the
    line without its newline; offset is where it starts in the file (bytes, from 0)."""
    if line == 1 and raw.startswith(UTF8_BOM):
        raw, offset = raw[len(UTF8_BOM):], offset + len(UTF8_BOM)
    text, problem = _decoded(raw, line, offset)
    if problem:
        return None, problem
    depth = nesting_depth(raw, max_depth)
    if depth > max_depth:
        return None, f"line {line}: arrays/objects nested {depth} deep, over the limit of {max_depth}"
    try:
        record = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        return None, f"line {line}: arrays/objects nested too deep (the limit is {max_depth})"
    except ValueError as err:
        return None, f"line {line}: not valid JSON ({_reason(err)})"
    if not isinstance(record, dict):
        return None, f"line {line}: a row must be a JSON object (got {_JSON_TYPES.get(type(record), 'a value')})"
    if not record:
        return None, f"line {line}: the row is an empty JSON object {{}}"
    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(record):
        return None, f"line {line}: a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), not Unicode"
    return record, None
