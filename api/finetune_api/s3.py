"""S3 URIs and S3 errors, as every component reads them: one parser, one join, one classification.

Pure: no boto3 import at module level. `classify` looks at botocore's exception types only when
it is handed an exception, so this module works where botocore is not installed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")

# What an S3 failure means for the caller: each component maps these kinds to its own errors
# (trainer exit codes, operator condition reasons, agent HTTP statuses).
NOT_FOUND, DENIED, UNAVAILABLE = "NotFound", "AccessDenied", "S3Unavailable"
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NoSuchBucket", "NotFound"})
DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"})


class InvalidS3Uri(ValueError):
    """A string that is not s3://<bucket>[/<key>]; the message names it."""


def parse_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b'); InvalidS3Uri naming the URI when malformed, or when its key
    could climb out of the prefix it names (see check_key)."""
    m = S3_URI.match(uri or "")
    if not m:
        raise InvalidS3Uri(f"not an s3:// URI: {uri!r} (expected s3://<bucket>/<key>)")
    key = m.group("key") or ""
    check_key(key, uri, trailing_slash=True)
    return m.group("bucket"), key


def check_key(key: str, what: str, trailing_slash: bool = False) -> None:
    """InvalidS3Uri unless every '/'-separated segment of key is a plain name: no '..' or '.' (a path
    climbing out of its prefix once written to disk or normalised by the store), no empty segment
    (a leading '/' or '//'); one trailing '/' (a prefix) only where trailing_slash allows it."""
    if not key:
        return
    body = key[:-1] if trailing_slash and key.endswith("/") else key
    for segment in body.split("/"):
        if segment in ("", ".", ".."):
            shown = {"": "an empty segment (a leading '/' or '//')", ".": "a '.' segment",
                     "..": "a '..' segment"}[segment]
            raise InvalidS3Uri(f"S3 key {key!r} of {what!r} has {shown}; keys must be plain '/'-separated names")


def join(prefix: str, *parts: str) -> str:
    """'s3://b/out/' + 'adapter', '/x' -> 's3://b/out/adapter/x' (one slash between parts)."""
    return "/".join([prefix.rstrip("/")] + [p.strip("/") for p in parts])


def kind_of_code(code: str) -> str:
    """The kind of an S3 error code (ClientError's Error.Code)."""
    if code in DENIED_CODES:
        return DENIED
    if code in NOT_FOUND_CODES:
        return NOT_FOUND
    return UNAVAILABLE


def describe(kind: str, what: str, detail: str) -> str:
    """The message for an S3 failure of `kind` met while doing `what`."""
    if kind == DENIED:
        return f"S3 refused {what}: {detail}"
    if kind == NOT_FOUND:
        return f"{what}: not found in S3 ({detail})"
    return f"S3 failed {what}: {detail}"


def classify(err: BaseException, what: str) -> Optional[tuple[str, str]]:
    """(kind, message) for a botocore error met while doing `what`; None if it is not one."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return None
    if isinstance(err, ClientError):
        code = (err.response.get("Error") or {}).get("Code", "")
        kind = kind_of_code(code)
        return kind, describe(kind, what, code or str(err))
    if isinstance(err, BotoCoreError):
        return UNAVAILABLE, f"S3 unreachable while {what}: {err}"
    return None


def is_not_found(err: BaseException) -> bool:
    """True for a ClientError that says the bucket or key does not exist."""
    response = getattr(err, "response", None)
    return isinstance(response, dict) and (response.get("Error") or {}).get("Code", "") in NOT_FOUND_CODES


def download_prefix(s3, uri: str, dest: Path) -> list:
    """Downloads every object under the prefix into dest, keeping relative paths; returns the files.
    s3 is a boto3 client; its errors pass through for the caller to classify."""
    bucket, prefix = parse_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    got = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            if not rel or rel.endswith("/"):
                continue
            check_key(rel, uri)  # a planted 'prefix/../x' would otherwise be written outside dest
            target = Path(dest) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            got.append(target)
    return got
