"""S3 access through boto3, configured the way production is.

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally
AWS_SESSION_TOKEN, which the operator maps from the job's Secret); the endpoint and region from
the job's spec.credentials, else AWS_ENDPOINT_URL / AWS_DEFAULT_REGION. S3 errors become typed
trainer failures: unreachable -> S3Unavailable (retryable), refused -> AccessDenied. URIs and the
error classification are finetune_api.s3's, shared with the operator and the adapter agent.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

from finetune_api import endpoints
from finetune_api import s3 as s3api
from finetune_api.s3 import DENIED, NOT_FOUND, classify, is_not_found, join, parse_uri

from .outcomes import ExitCode, TrainerFailure

__all__ = ["client", "delete_prefix", "download_prefix", "ensure_bucket", "errors", "join", "list_prefixes",
           "parse_uri", "upload_folder"]


def client(endpoint: Optional[str] = None, region: Optional[str] = None):
    if endpoint:
        try:
            endpoints.require_safe(endpoint, "spec.credentials.endpoint")
        except endpoints.UnsafeEndpoint as err:
            raise TrainerFailure(ExitCode.INVALID_CONFIG, str(err)) from None
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint or None, region_name=region or None,
                        config=Config(retries={"max_attempts": 6, "mode": "standard"}, connect_timeout=10,
                                      read_timeout=120))


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
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as err:
        if not is_not_found(err):
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
    with errors(f"downloading {uri}"):
        return s3api.download_prefix(s3, uri, dest)


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
