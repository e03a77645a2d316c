"""S3 as the operator sees it: clients from a user's Secret, and verified reads of training manifests.

The operator itself reads little from S3: the result manifest of a finished job (to fill lineage
and verify every adapter file's sha256 and size before anything is registered or served), and,
when a job is deleted under spec.lifecycle.cleanupOnDelete, the listings cleanup.py deletes. It
checks no dataset or base model for existence: the validate-only pod (the trainer) reads them.
Credentials come from the Secret the spec names, in the object's own namespace, exactly as the
trainer pods get them. URIs, S3 error kinds and the manifest are finetune_api's contracts.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Optional

from finetune_api import manifest as manifestmod, s3 as s3api


class StorageError(Exception):
    """A user-fixable problem with S3 (reason is a CamelCase condition reason)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def parse_uri(uri: str) -> tuple[str, str]:
    try:
        return s3api.parse_uri(uri)
    except s3api.InvalidS3Uri as err:
        raise StorageError("InvalidUri", str(err)) from None


join = s3api.join


def secret_keys(credentials: dict) -> dict:
    """Which keys of the Secret hold what (the CRD's defaults)."""
    ref = credentials["secretRef"]
    keys = {"aws_access_key_id": ref.get("accessKeyIdKey", "AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": ref.get("secretAccessKeyKey", "AWS_SECRET_ACCESS_KEY")}
    if ref.get("sessionTokenKey"):
        keys["aws_session_token"] = ref["sessionTokenKey"]
    return keys


def credentials_from_secret(secret: Optional[dict], credentials: dict) -> dict:
    """boto3 keyword arguments from a Secret, or StorageError(CredentialsMissing) naming what is missing."""
    name = credentials["secretRef"]["name"]
    if secret is None:
        raise StorageError("CredentialsMissing", f"spec.credentials.secretRef: Secret {name!r} does not exist in "
                                                 "this namespace")
    data = secret.get("data") or {}
    missing = [key for key in secret_keys(credentials).values() if key not in data]
    if missing:
        raise StorageError("CredentialsMissing", f"Secret {name!r} has no key(s) {', '.join(missing)} "
                                                 "(spec.credentials.secretRef names them)")
    out = {arg: base64.b64decode(data[key]).decode() for arg, key in secret_keys(credentials).items()}
    out["region_name"] = credentials.get("region", "us-east-1")
    if credentials.get("endpoint"):
        out["endpoint_url"] = credentials["endpoint"]
    return out


def client_for(core_api, namespace: str, credentials: Optional[dict]):
    """A boto3 S3 client with the credentials the spec names (or the operator's own environment)."""
    import boto3
    from botocore.config import Config

    from . import kube
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    if not credentials:
        return boto3.client("s3", config=config)
    secret = kube.read_or_none(lambda n, **k: core_api.read_namespaced_secret(n, namespace, **k),
                               credentials["secretRef"]["name"])
    return boto3.client("s3", config=config, **credentials_from_secret(secret, credentials))


def _storage_error(err: Exception, what: str) -> StorageError:
    found = s3api.classify(err, what)
    if found is None:
        raise err
    kind, message = found
    return StorageError(kind, message)


def read_bytes(s3, uri: str, limit: int = 16 << 20) -> bytes:
    bucket, key = parse_uri(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(limit + 1)
    except Exception as err:
        raise _storage_error(err, f"reading {uri}") from err
    if len(data) > limit:
        raise StorageError("ManifestInvalid", f"{uri} is larger than {limit} bytes")
    return data


def object_sha256(s3, uri: str) -> tuple[str, int]:
    """Streams an object and returns (hex sha256, size)."""
    bucket, key = parse_uri(uri)
    digest, size = hashlib.sha256(), 0
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    except Exception as err:
        raise _storage_error(err, f"reading {uri}") from err
    return digest.hexdigest(), size


@dataclasses.dataclass(frozen=True)
class VerifiedManifest:
    uri: str
    digest: str           # "sha256:<hex>" of the manifest's bytes
    manifest: dict
    files: list           # [{"name", "sha256", "size"}], each checked against S3

    @property
    def adapter_uri(self) -> str:
        return manifestmod.adapter_uri(self.uri)


def parse_manifest(data: bytes, uri: str) -> dict:
    """The manifest document, checked by finetune_api.manifest.parse (StorageError ManifestInvalid if not)."""
    return _parse(data, uri, None).doc


def _parse(data: bytes, uri: str, expected_digest: Optional[str]) -> manifestmod.AdapterManifest:
    try:
        return manifestmod.parse(data, expected_digest)
    except manifestmod.ManifestError as err:
        reason = "DigestMismatch" if err.reason == manifestmod.DIGEST_MISMATCH else "ManifestInvalid"
        raise StorageError(reason, f"{uri}: {err.message}") from None


def verify_manifest(s3, manifest_uri: str, expected_digest: Optional[str] = None) -> VerifiedManifest:
    """Reads the manifest, checks its own digest (if one is expected) and every listed file's sha256 and size.

    Raises StorageError(DigestMismatch) naming the manifest or every file that does not match.
    """
    parsed = _parse(read_bytes(s3, manifest_uri), manifest_uri, expected_digest)
    adapter = manifestmod.adapter_uri(manifest_uri)
    actual = {f.path: object_sha256(s3, join(adapter, f.path)) for f in parsed.files}
    bad = manifestmod.mismatches(parsed, actual)
    if bad:
        raise StorageError("DigestMismatch", f"{adapter}: files do not match the manifest: {', '.join(bad)}")
    return VerifiedManifest(manifest_uri, parsed.digest, parsed.doc, [f.to_doc() for f in parsed.files])
