"""S3 access through boto3, configured the way production is.

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally
AWS_SESSION_TOKEN, which the operator maps from the job's Secret); the endpoint and region from
the job's spec.credentials, else AWS_ENDPOINT_URL / AWS_DEFAULT_REGION. S3 errors become typed
trainer failures: unreachable -> S3Unavailable (retryable), refused -> AccessDenied.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator, Optional

from .outcomes import ExitCode, TrainerFailure

S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


def parse_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b'); ValueError naming the URI when malformed."""
    m = S3_URI.match(uri)
    if not m:
        raise ValueError(f"not an s3:// URI: {uri!r} (expected s3://<bucket>/<key>)")
    return m.group("bucket"), m.group("key") or ""


def join(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/")] + [p.strip("/") for p in parts])


def client(endpoint: Optional[str] = None, region: Optional[str] = None):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint or None, region_name=region or None,
                        config=Config(retries={"max_attempts": 6, "mode": "standard"}, connect_timeout=10,
                                      read_timeout=120))


NOT_FOUND, DENIED, UNAVAILABLE = "NotFound", "AccessDenied", "S3Unavailable"


def classify(err: Exception, what: str) -> Optional[tuple[str, str]]:
    """(kind, message) for a boto error met while doing `what`; None if it is not a boto error.
    Shared by the trainer and the inference agent, which map the kinds to their own errors."""
    from botocore.exceptions import BotoCoreError, ClientError
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return DENIED, f"S3 refused {what}: {code}"
        if code in ("NoSuchKey", "404", "NoSuchBucket", "NotFound"):
            return NOT_FOUND, f"{what}: not found in S3 ({code})"
        return UNAVAILABLE, f"S3 failed {what}: {code or err}"
    if isinstance(err, BotoCoreError):
        return UNAVAILABLE, f"S3 unreachable while {what}: {err}"
    return None


@contextlib.contextmanager
def errors(what: str) -> Iterator[None]:
    """Turns boto errors into TrainerFailures that say what was being done."""
    try:
        yield
    except Exception as err:
        found = classify(err, what)
        if found is None:
            raise
        kind, message = found
        if kind == NOT_FOUND:
            raise FileNotFoundError(message) from None
        raise TrainerFailure(ExitCode.ACCESS_DENIED if kind == DENIED else ExitCode.S3_UNAVAILABLE,
                             message) from None


def ensure_bucket(s3, bucket: str) -> None:
    from botocore.exceptions import ClientError
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=bucket)


def upload_folder(folder: Path, uri: str, s3=None) -> int:
    """Uploads every file under folder to the prefix; returns how many. Creates the bucket if absent."""
    s3 = s3 or client()
    bucket, prefix = parse_uri(uri)
    with errors(f"uploading {folder} to {uri}"):
        ensure_bucket(s3, bucket)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        for path in files:
            s3.upload_file(str(path), bucket, join(prefix, path.relative_to(folder).as_posix()).lstrip("/"))
    return len(files)


def download_prefix(s3, uri: str, dest: Path) -> list[Path]:
    """Downloads every object under the prefix into dest (keeping relative paths)."""
    bucket, prefix = parse_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    got = []
    with errors(f"downloading {uri}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):]
                if not rel or rel.endswith("/"):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
                got.append(target)
    return got


def list_prefixes(s3, uri: str) -> list[str]:
    """Immediate 'sub-folders' of a prefix, as full s3:// URIs."""
    bucket, prefix = parse_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    out = []
    with errors(f"listing {uri}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            out += [f"s3://{bucket}/{p['Prefix'].rstrip('/')}" for p in page.get("CommonPrefixes", [])]
    return out


def delete_prefix(s3, uri: str) -> None:
    bucket, prefix = parse_uri(uri)
    with errors(f"deleting {uri}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
