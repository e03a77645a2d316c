"""S3 access through boto3, configured the way production is: endpoint and keys from the env.

AWS_ENDPOINT_URL (MinIO, Ceph; unset for AWS), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_DEFAULT_REGION are read by boto3 itself; we only parse URIs and walk folders.
"""
from __future__ import annotations

import re
from pathlib import Path

S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


def parse_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b'); ValueError naming the URI when malformed."""
    m = S3_URI.match(uri)
    if not m:
        raise ValueError(f"not an s3:// URI: {uri!r} (expected s3://<bucket>/<key>)")
    return m.group("bucket"), m.group("key") or ""


def client():
    import boto3
    from botocore.config import Config
    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def upload_folder(folder: Path, uri: str, s3=None) -> int:
    """Uploads every file under folder to the prefix; returns how many. Creates the bucket if absent."""
    s3 = s3 or client()
    bucket, prefix = parse_uri(uri)
    ensure_bucket(s3, bucket)
    prefix = prefix.rstrip("/")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        key = f"{prefix}/{path.relative_to(folder).as_posix()}" if prefix else path.relative_to(folder).as_posix()
        s3.upload_file(str(path), bucket, key)
    return len(files)


def ensure_bucket(s3, bucket: str) -> None:
    from botocore.exceptions import ClientError
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=bucket)
