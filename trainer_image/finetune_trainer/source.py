"""A dataset object opened for streaming, hashed as it is read (content-addressed lineage).

Every byte handed to the parser goes through sha256 and a byte count, so the digest is of exactly
the bytes parsed. At the end (`finish`) the rest of the object is drained into the digest (a
maxRows read still identifies the whole object), the result is compared with what the validate
pod recorded (finetune_api.datasets, Contract B), and the source record is returned for the
DatasetReport, the manifest and the ModelVersion's lineage.

When validation recorded a VersionId the trainer reads that version, so a later overwrite of the
key cannot reach training; the digest is still checked. Without one (an unversioned bucket) a
changed object fails the job with DatasetChanged (exit 21, permanent) before any training step:
the trainer reads all of its data before step 1.
"""
from __future__ import annotations

import hashlib
from typing import Iterator, Optional

from finetune_api import datasets

from . import s3 as s3mod
from .outcomes import ExitCode, TrainerFailure

CHUNK = 1024 * 1024
# A long GET can be dropped mid-stream (a store closes a connection a slow reader keeps open: MinIO did
# at 18 MB of a 100 MB object read behind the data-safety gate). The read resumes with a ranged GET
# from the byte it stopped at, pinned to the same ETag (and VersionId), at most this many times per object.
MAX_RESUMES = 5


def _dropped(err: Exception) -> bool:
    """Whether err is the stream breaking off (resumable), not a refusal or a missing object."""
    from botocore import exceptions as be
    streaming = tuple(getattr(be, n) for n in ("IncompleteReadError", "ResponseStreamingError", "ReadTimeoutError",
                                                "ConnectionClosedError", "EndpointConnectionError") if hasattr(be, n))
    import urllib3.exceptions as ue
    return isinstance(err, streaming + (ue.ProtocolError, ue.ReadTimeoutError, ConnectionError, TimeoutError))


def _version(obj: dict) -> Optional[str]:
    version = obj.get("VersionId")
    return version if version and version != "null" else None  # "null": written while unversioned


class HashingStream:
    """An S3 object's body that hashes and counts what is read (read / iter_chunks, like botocore's)."""

    def __init__(self, s3, uri: str, role: str, field: str, expected: Optional[datasets.DatasetSource] = None):
        self.uri, self.role, self.field, self.expected = uri, role, field, expected
        self._s3 = s3
        bucket, key = s3mod.parse_uri(uri)
        self._request = {"Bucket": bucket, "Key": key}
        if expected is not None and expected.version_id:
            self._request["VersionId"] = expected.version_id
        with s3mod.errors(f"reading {uri}"):
            obj = s3.get_object(**self._request)
        self.resumes = 0
        self.etag = obj.get("ETag", "").strip('"')
        self.version_id = _version(obj)
        size = obj.get("ContentLength")
        self.content_length = int(size) if size is not None else None
        self._body = obj["Body"]
        self._sha = hashlib.sha256()
        self.bytes_read = 0

    def _seen(self, data: bytes) -> bytes:
        self._sha.update(data)
        self.bytes_read += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        while True:
            with s3mod.errors(f"reading {self.uri}"):
                try:
                    data = self._body.read() if size is None or size < 0 else self._body.read(size)
                except Exception as err:  # noqa: BLE001 - only a dropped stream is resumed, the rest re-raised
                    if not _dropped(err) or self.resumes >= MAX_RESUMES:
                        raise
                    self._resume()
                    continue
            return self._seen(data)

    def _resume(self) -> None:
        """Reopens the object at the next unread byte; the same content only (If-Match the ETag)."""
        self.resumes += 1
        request = dict(self._request, Range=f"bytes={self.bytes_read}-")
        if self.etag:
            request["IfMatch"] = self.etag
        try:
            obj = self._s3.get_object(**request)
        except Exception as err:  # noqa: BLE001 - classified below
            code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412"):
                raise TrainerFailure(ExitCode.DATASET_CHANGED,
                                     f"{self.field} {self.uri} changed while it was being read (its ETag is no "
                                     "longer the one the read started with); re-run the job") from None
            raise
        self._body = obj["Body"]

    def iter_chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        while data := self.read(chunk_size):
            yield data

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def finish(self) -> datasets.DatasetSource:
        """Drains the rest, checks the digest against the validated one, returns the source record."""
        for _ in self.iter_chunks():
            pass
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        check(self.expected, self.field, self.uri, self.sha256, self.version_id)
        return datasets.DatasetSource(role=self.role, uri=self.uri, sha256=self.sha256, bytes=self.bytes_read,
                                      version_id=self.version_id,
                                      derived_from=self.expected.derived_from if self.expected else None)


def check(expected: Optional[datasets.DatasetSource], field: str, uri: str, sha256: str,
          version_id: Optional[str]) -> None:
    """DatasetChanged unless what was read is what validation recorded (None: nothing to compare)."""
    if expected is None or expected.sha256 == sha256:
        return
    raise TrainerFailure(ExitCode.DATASET_CHANGED,
                         f"{field} {uri} changed after validation: sha256 {expected.sha256} was validated, "
                         f"{sha256} read now; re-run the job to validate the new content")


def expected(validated: tuple, role: str, field: str, uri: str) -> Optional[datasets.DatasetSource]:
    """The record to check `uri` against. An object the validate pod did not record, for a role it did
    record others for, is not the data that was validated (DatasetChanged)."""
    found = datasets.expected_for(validated, role, uri)
    if found is None and any(s.role == role for s in validated):
        raise TrainerFailure(ExitCode.DATASET_CHANGED,
                             f"{field} {uri} is not an object validation checked for the {role} set; "
                             "re-run the job to validate it")
    return found
