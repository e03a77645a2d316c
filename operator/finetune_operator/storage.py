"""S3 as the operator sees it: clients from a user's Secret, and verified reads of training manifests.

The operator itself reads little from S3: the result manifest of a finished job (to fill lineage
and verify every adapter file's sha256 before anything is registered or served), and the
existence checks of preflight. Credentials come from the Secret the spec names, in the
object's own namespace, exactly as the trainer pods get them.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Optional


class StorageError(Exception):
    """A user-fixable problem with S3 (reason is a CamelCase condition reason)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def parse_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise StorageError("InvalidUri", f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def join(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *(p.strip("/") for p in parts)])


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


def _client_error(err, what: str) -> StorageError:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    if code in ("NoSuchKey", "404", "NoSuchBucket", "NotFound"):
        return StorageError("NotFound", f"{what}: does not exist ({code})")
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return StorageError("AccessDenied", f"{what}: access denied ({code})")
    return StorageError("S3Unavailable", f"{what}: {err}")


def read_bytes(s3, uri: str, limit: int = 16 << 20) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError
    bucket, key = parse_uri(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(limit + 1)
    except ClientError as err:
        raise _client_error(err, uri) from err
    except BotoCoreError as err:
        raise StorageError("S3Unavailable", f"{uri}: {err}") from err
    if len(data) > limit:
        raise StorageError("ManifestInvalid", f"{uri} is larger than {limit} bytes")
    return data


def object_sha256(s3, uri: str) -> tuple[str, int]:
    """Streams an object and returns (hex sha256, size)."""
    from botocore.exceptions import BotoCoreError, ClientError
    bucket, key = parse_uri(uri)
    digest, size = hashlib.sha256(), 0
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    except ClientError as err:
        raise _client_error(err, uri) from err
    except BotoCoreError as err:
        raise StorageError("S3Unavailable", f"{uri}: {err}") from err
    return digest.hexdigest(), size


def exists(s3, uri: str) -> bool:
    """True if uri is an object, or a prefix with at least one object under it."""
    from botocore.exceptions import ClientError
    bucket, key = parse_uri(uri)
    try:
        if key and not key.endswith("/"):
            try:
                s3.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/" if key else "", MaxKeys=1)
        return listed.get("KeyCount", 0) > 0
    except ClientError as err:
        raise _client_error(err, uri) from err


@dataclasses.dataclass(frozen=True)
class VerifiedManifest:
    uri: str
    digest: str           # "sha256:<hex>" of the manifest's bytes
    manifest: dict
    files: list           # [{"name", "sha256", "size"}], each checked against S3

    @property
    def adapter_uri(self) -> str:
        return join(self.uri.rsplit("/", 1)[0], "adapter")


def parse_manifest(data: bytes, uri: str) -> dict:
    try:
        manifest = json.loads(data)
    except ValueError as err:
        raise StorageError("ManifestInvalid", f"{uri} is not JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("kind") != "AdapterManifest" or \
            not isinstance(manifest.get("files"), list) or not manifest["files"]:
        raise StorageError("ManifestInvalid", f"{uri} is not an AdapterManifest with a files list")
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or not entry.get("name") or len(str(entry.get("sha256", ""))) != 64 \
                or ".." in str(entry["name"]).split("/"):
            raise StorageError("ManifestInvalid", f"{uri}: bad file entry {entry!r}")
    return manifest


def verify_manifest(s3, manifest_uri: str, expected_digest: Optional[str] = None) -> VerifiedManifest:
    """Reads the manifest, checks its own digest (if one is expected) and every listed file's sha256.

    Raises StorageError(DigestMismatch) naming the first file (or the manifest) that does not match.
    """
    data = read_bytes(s3, manifest_uri)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if expected_digest and expected_digest != digest:
        raise StorageError("DigestMismatch", f"{manifest_uri} has digest {digest}, expected {expected_digest}")
    manifest = parse_manifest(data, manifest_uri)
    base = manifest_uri.rsplit("/", 1)[0]
    for entry in manifest["files"]:
        uri = join(base, entry["name"])
        actual, size = object_sha256(s3, uri)
        if actual != entry["sha256"]:
            raise StorageError("DigestMismatch", f"{uri}: sha256 {actual} does not match the manifest's "
                                                 f"{entry['sha256']}")
        if entry.get("size") is not None and int(entry["size"]) != size:
            raise StorageError("DigestMismatch", f"{uri}: {size} bytes, the manifest says {entry['size']}")
    return VerifiedManifest(manifest_uri, digest, manifest, [dict(e) for e in manifest["files"]])
