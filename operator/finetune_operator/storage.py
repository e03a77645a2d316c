"""S3 as the operator sees it: clients from a user's Secret, and verified reads of training manifests.

The operator itself reads little from S3: the result manifest of a finished job (to fill lineage
and verify every adapter file's sha256 and size before anything is registered or served), and,
when a job is deleted under spec.lifecycle.cleanupOnDelete, the listings cleanup.py deletes. It
checks no dataset or base model for existence: the validate-only pod (the trainer) reads them.
Credentials come from the Secret the spec names, in the object's own namespace, exactly as the
trainer pods get them, and only if it is opted in (credentials.py); without credentials the
operator uses its own identity only where the platform team allowed it, and every client it
hands out checks each bucket/key against the namespace's allow-list first (s3access.py). URIs,
S3 error kinds and the manifest are finetune_api's contracts.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
from typing import Optional

from finetune_api import manifest as manifestmod, s3 as s3api

from . import deadline


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
    """boto3 keyword arguments from a Secret, or StorageError naming what is missing (CredentialsMissing)
    or that the Secret is not opted in (SecretNotOptedIn: credentials.LABEL)."""
    from . import credentials as secrets
    name = credentials["secretRef"]["name"]
    secret = secrets.check(secret, name, "spec.credentials.secretRef")
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
    """An S3 client for a namespace's object: the credentials the spec names (their Secret opted in),
    or the operator's own environment only where the platform team allowed it (s3access). Every
    bucket/key it reads, lists or deletes is checked against the namespace's allow-list first."""
    import boto3
    from botocore.config import Config

    from . import credentials as secrets, s3access
    policy = s3access.current()
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10)
    if not credentials:
        refused = s3access.identity_refusal(policy, namespace)
        if refused is not None:
            raise refused
        return s3access.GuardedS3(_bounded(boto3.client("s3", config=config)), policy, namespace)
    secret = secrets.read(core_api, namespace, credentials["secretRef"]["name"], "spec.credentials.secretRef")
    client = _bounded(boto3.client("s3", config=config, **credentials_from_secret(secret, credentials)))
    return s3access.GuardedS3(client, policy, namespace)


# --- deadlines and size caps (a slow or hostile endpoint must not hold a worker) ---------------------
@functools.lru_cache(maxsize=1)
def limits():
    """The platform team's S3 deadlines and caps (OperatorSettings, from the environment)."""
    from .builders.settings import OperatorSettings
    return OperatorSettings.from_env()


def _bounded(client):
    """Every API call of client runs under a total deadline (s3_call_seconds), retries included; a
    streamed body read after the call stays under the deadline of the caller's `deadline.within`."""
    budgets: dict = {}

    def start(context=None, **_):
        budgets[id(context)] = deadline.enter(limits().s3_call_seconds, "S3 call")

    def end(context=None, **_):
        budget = budgets.pop(id(context), None)
        if budget is not None:
            deadline.leave(budget)

    client.meta.events.register("before-call.s3", start)
    client.meta.events.register("after-call.s3", end)
    client.meta.events.register("after-call-error.s3", end)
    return client


def _storage_error(err: Exception, what: str) -> StorageError:
    if isinstance(err, deadline.DeadlineExceeded) or deadline.expired():
        return StorageError("S3Unavailable", f"{what}: S3 sent no complete answer in time ({err.__class__.__name__})")
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


def object_sha256(s3, uri: str, limit: Optional[int] = None) -> tuple[str, int]:
    """Streams an object and returns (hex sha256, size); stops after limit + 1 bytes (the size then
    tells the caller it is too big)."""
    bucket, key = parse_uri(uri)
    digest, size = hashlib.sha256(), 0
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        while limit is None or size <= limit:
            chunk = body.read(1 << 20 if limit is None else min(1 << 20, limit + 1 - size))
            if not chunk:
                break
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

    Raises StorageError(DigestMismatch) naming the manifest or every file that does not match. The
    whole verification has one total deadline (s3_verify_seconds: S3Unavailable when it passes),
    and the manifest's entries and declared file sizes are capped (ManifestInvalid).
    """
    cap = limits()
    try:
        with deadline.within(cap.s3_verify_seconds, f"verifying {manifest_uri}"):
            return _verify(s3, manifest_uri, expected_digest, cap)
    except deadline.DeadlineExceeded as err:
        raise StorageError("S3Unavailable", f"verifying {manifest_uri}: not done within "
                                            f"{cap.s3_verify_seconds:g} s (FTO_S3_VERIFY_SECONDS)") from err


def _verify(s3, manifest_uri: str, expected_digest: Optional[str], cap) -> VerifiedManifest:
    parsed = _parse(read_bytes(s3, manifest_uri, cap.max_manifest_bytes), manifest_uri, expected_digest)
    adapter = manifestmod.adapter_uri(manifest_uri)
    if len(parsed.files) > cap.max_manifest_files:
        raise StorageError("ManifestInvalid", f"{manifest_uri} lists {len(parsed.files)} files; at most "
                                              f"{cap.max_manifest_files} are verified (FTO_MAX_MANIFEST_FILES)")
    big = [f.path for f in parsed.files if (f.size or 0) > cap.max_adapter_file_bytes]
    if big:
        raise StorageError("ManifestInvalid", f"{adapter}: file(s) over {cap.max_adapter_file_bytes} bytes "
                                              f"(FTO_MAX_ADAPTER_FILE_BYTES): {', '.join(big[:5])}")
    actual = {f.path: object_sha256(s3, join(adapter, f.path), f.size if f.size is not None
                                    else cap.max_adapter_file_bytes) for f in parsed.files}
    bad = manifestmod.mismatches(parsed, actual)
    if bad:
        raise StorageError("DigestMismatch", f"{adapter}: files do not match the manifest: {', '.join(bad)}")
    return VerifiedManifest(manifest_uri, parsed.digest, parsed.doc, [f.to_doc() for f in parsed.files])
