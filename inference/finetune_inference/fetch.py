"""Downloading a manifest and the adapter files it lists from S3, hashing as they land.

Blocking boto3 calls: the agent runs these in a thread. S3 failures become AgentErrors:
not found -> 404 NotFound, refused -> 403 AccessDenied, anything else -> 503 S3Unavailable.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from finetune_api import s3 as s3uri
from finetune_api.digests import file_sha256
from finetune_api.s3 import join, parse_uri

from .decisions import AgentError, Manifest


def client(endpoint: str | None, region: str | None = None):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint or os.environ.get("AWS_ENDPOINT_URL") or None,
                        region_name=region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                        config=Config(retries={"max_attempts": 6, "mode": "standard"}, connect_timeout=10,
                                      read_timeout=120))


_STATUS = {s3uri.NOT_FOUND: 404, s3uri.DENIED: 403, s3uri.UNAVAILABLE: 503}


@contextlib.contextmanager
def s3_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ValueError as err:  # a malformed s3:// URI
        raise AgentError(400, "InvalidRequest", str(err)) from None
    except Exception as err:
        found = s3uri.classify(err, what)
        if found is None:
            raise
        kind, message = found
        raise AgentError(_STATUS[kind], kind, message) from None


def get_bytes(s3, uri: str) -> bytes:
    with s3_errors(f"reading {uri}"):
        bucket, key = parse_uri(uri)
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def download_files(s3, adapter_uri: str, manifest: Manifest, dest: Path) -> dict:
    """Downloads every file the manifest lists into dest; returns {relative path: sha256 hex}."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    got = {}
    for f in manifest.files:
        target = dest / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with s3_errors(f"downloading {join(adapter_uri, f.path)}"):
            bucket, key = parse_uri(join(adapter_uri, f.path))
            s3.download_file(bucket, key, str(target))
        got[f.path] = file_sha256(target)
    return got


def download_prefix(s3, uri: str, dest: Path) -> list[Path]:
    """Downloads every object under the prefix into dest, keeping relative paths (a base model folder)."""
    with s3_errors(f"downloading {uri}"):
        return s3uri.download_prefix(s3, uri, dest)


def hash_folder(folder: Path, relative_paths) -> dict:
    """{relative path: sha256 hex} for the files that exist (re-verification before a reload)."""
    return {rel: file_sha256(folder / rel) for rel in relative_paths if (folder / rel).is_file()}
