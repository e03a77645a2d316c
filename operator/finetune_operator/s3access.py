"""Which S3 buckets and prefixes a namespace may use, and with whose identity the operator acts there.

The platform team sets this in the chart's values (s3AllowList); the chart renders it into the
admission policies AND into the operator's environment (FTO_S3_POLICY, JSON), so admission and
the operator apply the same mapping. This module is the operator's one parser of it:

    {"enabled": true, "buckets": ["shared"],
     "namespaces": {"team-a": {"buckets": [...], "prefixes": ["s3://shared/team-a/"],
                               "operatorIdentity": false}}}

- With no spec.credentials the operator would act with its own identity (the boto3 default
  chain): it never does, unless the platform team set operatorIdentity for that namespace AND
  bound it to prefixes (so the operator's identity is used only inside them).
- When the allow-list is enabled, every bucket and key the operator reads, lists or deletes for a
  namespace is checked first: inside one of the namespace's prefixes when it has any, else in
  the cluster-wide or the namespace's buckets. Keys with "." or ".." segments are refused always.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from typing import Optional

from finetune_api import s3 as s3api

from .storage import StorageError

ENV = "FTO_S3_POLICY"
CREDENTIALS_REQUIRED = "CredentialsRequired"
FORBIDDEN = "S3LocationForbidden"
_DOT_SEGMENT = re.compile(r"(^|/)\.\.?(/|$)")


@dataclasses.dataclass(frozen=True)
class Namespace:
    buckets: tuple[str, ...] = ()
    prefixes: tuple[tuple[str, str], ...] = ()   # (bucket, key prefix ending in "/" or "")
    operator_identity: bool = False


@dataclasses.dataclass(frozen=True)
class Policy:
    enabled: bool = False
    buckets: tuple[str, ...] = ()
    namespaces: tuple[tuple[str, Namespace], ...] = ()

    def of(self, namespace: str) -> Namespace:
        return dict(self.namespaces).get(namespace, Namespace())


def _prefix(uri: str) -> tuple[str, str]:
    bucket, key = s3api.parse_uri(uri)
    key = key.strip("/")
    return bucket, key + "/" if key else ""


def parse(text: str) -> Policy:
    """FTO_S3_POLICY's JSON as a Policy; ValueError naming what is wrong (an admin's mistake)."""
    if not text.strip():
        return Policy()
    try:
        doc = json.loads(text)
        namespaces = tuple(sorted(
            (ns, Namespace(tuple(v.get("buckets") or ()), tuple(_prefix(p) for p in v.get("prefixes") or ()),
                           bool(v.get("operatorIdentity"))))
            for ns, v in (doc.get("namespaces") or {}).items()))
        return Policy(bool(doc.get("enabled")), tuple(doc.get("buckets") or ()), namespaces)
    except (ValueError, AttributeError, TypeError, s3api.InvalidS3Uri) as err:
        raise ValueError(f"{ENV} is not a valid S3 policy: {err}") from None


@functools.lru_cache(maxsize=1)
def _from_env(text: str) -> Policy:
    return parse(text)


def current() -> Policy:
    return _from_env(os.environ.get(ENV, ""))


def identity_refusal(policy: Policy, namespace: str) -> Optional[StorageError]:
    """Why the operator may not act with its own identity in namespace (None when the admin allowed it)."""
    ns = policy.of(namespace)
    if ns.operator_identity and ns.prefixes:
        return None
    return StorageError(CREDENTIALS_REQUIRED, "spec.credentials is required: the operator never reads or deletes "
                                              "S3 objects for a job or version with its own identity, and no S3 "
                                              f"identity is configured for namespace {namespace} (s3AllowList)")


def location_refusal(policy: Policy, namespace: str, bucket: str, key: str) -> Optional[StorageError]:
    """Why the operator may not read, list or delete s3://bucket/key for namespace (None when it may)."""
    where = f"s3://{bucket}/{key}"
    if _DOT_SEGMENT.search(key):
        return StorageError(FORBIDDEN, f"{where} has a '.' or '..' path segment; write the key plainly")
    if not policy.enabled:
        return None
    ns = policy.of(namespace)
    if ns.prefixes:
        if any(bucket == b and (key + "/").startswith(p) for b, p in ns.prefixes):
            return None
        allowed = ", ".join(f"s3://{b}/{p}" for b, p in ns.prefixes)
        return StorageError(FORBIDDEN, f"{where} is outside the S3 prefixes namespace {namespace} may use "
                                       f"({allowed}); ask the platform team")
    if bucket in policy.buckets or bucket in ns.buckets:
        return None
    return StorageError(FORBIDDEN, f"S3 bucket {bucket} is not on the allow-list for namespace {namespace}; "
                                   "ask the platform team")


class GuardedS3:
    """An S3 client for one namespace that checks every bucket/key against the policy before the call.

    Only the calls the operator makes exist here (get_object, list_objects_v2 pages, delete_objects),
    so a new use of S3 has to be added, and checked, deliberately."""

    def __init__(self, client, policy: Policy, namespace: str):
        self._client, self._policy, self._ns = client, policy, namespace

    def _check(self, bucket: str, key: str) -> None:
        err = location_refusal(self._policy, self._ns, bucket, key)
        if err is not None:
            raise err

    def get_object(self, Bucket: str, Key: str, **kwargs):  # noqa: N803 - boto3's names
        self._check(Bucket, Key)
        return self._client.get_object(Bucket=Bucket, Key=Key, **kwargs)

    def delete_objects(self, Bucket: str, Delete: dict, **kwargs):  # noqa: N803
        for obj in Delete.get("Objects") or []:
            self._check(Bucket, obj["Key"])
        return self._client.delete_objects(Bucket=Bucket, Delete=Delete, **kwargs)

    def get_paginator(self, name: str):
        if name != "list_objects_v2":
            raise AttributeError(f"GuardedS3 has no paginator {name}")
        return _GuardedListing(self, self._client.get_paginator(name))


class _GuardedListing:
    def __init__(self, guard: GuardedS3, paginator):
        self._guard, self._paginator = guard, paginator

    def paginate(self, Bucket: str, Prefix: str = "", **kwargs):  # noqa: N803
        self._guard._check(Bucket, Prefix)
        return self._paginator.paginate(Bucket=Bucket, Prefix=Prefix, **kwargs)
