"""Validated datasets (Contract B): which dataset objects the validate pod checked, by content.

One source record per object the validate pod read (training, validation, regression) and per
transformed copy the data-safety gate wrote:

    {"role": "train"|"validation"|"regression", "uri": "s3://b/k", "sha256": "<64 hex>",
     "bytes": <int>, "versionId": "<S3 VersionId>"?, "derivedFrom": {"uri", "sha256"}?}

The validate pod reports the list under datasetStats.sources in its termination message; the
operator records it in status.lineage.datasets and hands it to the trainer Job as the env
FTO_VALIDATED_DATASETS (`encode`); the trainer (`decode`) checks every object it reads against
`expected_for(...)` (digest differs -> exit 21 DatasetChanged) and writes the list into the adapter
manifest's dataset.sources, from where it reaches the ModelVersion's status.lineage.

A copy with `derivedFrom` (Redact/Drop/cleaning) replaces its original for training: `read_uri`
names the object to read for a role. sha256 is the digest of the object's bytes exactly as stored
(not the S3 ETag, which is no content hash for multipart uploads).
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Iterable, Optional

from .schema import array, integer, obj, string

ENV = "FTO_VALIDATED_DATASETS"
ROLES = ("train", "validation", "regression")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_URI = 2048
_MAX_VERSION_ID = 1024


class DatasetSourcesError(ValueError):
    """What was decoded is not a valid list of sources."""


@dataclasses.dataclass(frozen=True)
class DerivedFrom:
    uri: str
    sha256: str

    def to_doc(self) -> dict:
        return {"uri": self.uri, "sha256": self.sha256}


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    role: str                       # train | validation | regression
    uri: str                        # s3://bucket/key
    sha256: str                     # hex sha256 of the object's bytes
    bytes: int                      # the object's size
    version_id: Optional[str] = None
    derived_from: Optional[DerivedFrom] = None

    def to_doc(self) -> dict:
        doc = {"role": self.role, "uri": self.uri, "sha256": self.sha256, "bytes": self.bytes}
        if self.version_id:
            doc["versionId"] = self.version_id
        if self.derived_from is not None:
            doc["derivedFrom"] = self.derived_from.to_doc()
        return doc


def _text(doc: dict, key: str, limit: int) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise DatasetSourcesError(f"source {key} must be a non-empty string of at most {limit} characters")
    return value


def _digest(doc: dict, key: str = "sha256") -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not _HEX64.match(value):
        raise DatasetSourcesError(f"source {key} must be 64 lowercase hex digits")
    return value


def from_doc(doc) -> DatasetSource:
    """One source from its JSON document, checked (roles, s3:// uris, hex digests, sizes)."""
    if not isinstance(doc, dict):
        raise DatasetSourcesError("a source must be an object")
    role = doc.get("role")
    if role not in ROLES:
        raise DatasetSourcesError(f"source role must be one of {', '.join(ROLES)}")
    uri = _text(doc, "uri", _MAX_URI)
    if not uri.startswith("s3://"):
        raise DatasetSourcesError("source uri must be an s3:// uri")
    size = doc.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DatasetSourcesError("source bytes must be a non-negative integer")
    version = _text(doc, "versionId", _MAX_VERSION_ID) if doc.get("versionId") is not None else None
    derived = doc.get("derivedFrom")
    if derived is not None:
        if not isinstance(derived, dict):
            raise DatasetSourcesError("source derivedFrom must be an object {uri, sha256}")
        derived = DerivedFrom(uri=_text(derived, "uri", _MAX_URI), sha256=_digest(derived))
    return DatasetSource(role=role, uri=uri, sha256=_digest(doc), bytes=size, version_id=version,
                         derived_from=derived)


def to_docs(sources: Iterable[DatasetSource]) -> list:
    return [s.to_doc() for s in sources]


def from_docs(docs) -> tuple:
    if not isinstance(docs, list):
        raise DatasetSourcesError("sources must be a list")
    return tuple(from_doc(d) for d in docs)


def encode(sources: Iterable[DatasetSource]) -> str:
    """Compact JSON (the env FTO_VALIDATED_DATASETS; the termination message embeds to_docs)."""
    return json.dumps(to_docs(sources), separators=(",", ":"), sort_keys=True)


def decode(text: Optional[str]) -> tuple:
    """The sources in `text`; () for an empty/absent value. Raises DatasetSourcesError."""
    if not text:
        return ()
    try:
        docs = json.loads(text)
    except ValueError:
        raise DatasetSourcesError("validated datasets are not JSON") from None
    return from_docs(docs)


def expected_for(sources: Iterable[DatasetSource], role: str, uri: str) -> Optional[DatasetSource]:
    """The validated record of the object `uri` read as `role`, or None when none was validated."""
    for source in sources:
        if source.role == role and source.uri == uri:
            return source
    return None


def read_uri(sources: Iterable[DatasetSource], role: str, uri: str) -> str:
    """The object to read for `role`: a transformed copy derived from `uri` if one was validated, else `uri`."""
    for source in sources:
        if source.role == role and source.derived_from is not None and source.derived_from.uri == uri:
            return source.uri
    return uri


MAX_SOURCES = 16


def schema(description: str) -> dict:
    """The CRD schema of a sources list (status.datasetStats.sources, status.lineage.datasets)."""
    digest = lambda what: string(what, max_length=64, pattern="^[0-9a-f]{64}$")  # noqa: E731
    source = obj("One dataset object, identified by content.", {
        "role": string("Which set it is.", enum=list(ROLES)),
        "uri": string("s3:// URI of the object.", max_length=_MAX_URI),
        "sha256": digest("Hex sha256 of the object's bytes (a content digest, unlike the S3 ETag)."),
        "bytes": integer("The object's size.", minimum=0, fmt="int64"),
        "versionId": string("The S3 VersionId read (versioned buckets only); the trainer reads this version.",
                            max_length=_MAX_VERSION_ID),
        "derivedFrom": obj("For a transformed copy (spec.dataSafety Redact/Drop/cleaning): the original it was "
                           "made from.", {"uri": string("The original's s3:// URI.", max_length=_MAX_URI),
                                          "sha256": digest("The original's hex sha256.")}),
    }, required=["role", "uri", "sha256", "bytes"])
    return array(description, source, max_items=MAX_SOURCES)
