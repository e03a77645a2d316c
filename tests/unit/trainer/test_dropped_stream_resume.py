"""A dataset GET dropped mid-stream resumes with a ranged GET pinned to the ETag, so the rows, the
digest and the line numbers are those of an unbroken read; a changed object while resuming is
DatasetChanged. Before this, MinIO dropping a slow reader's stream at 18 MB of 100 MB ended the
validation as S3Unavailable (retried, failing the same way)."""
from __future__ import annotations

import hashlib
import io
import json

import pytest
from botocore.exceptions import ClientError, IncompleteReadError

from finetune_trainer import source
from finetune_trainer.outcomes import ExitCode, TrainerFailure
from finetune_trainer.reading import InputLimits, read_records
from finetune_trainer.report_types import DatasetReport

ROWS = b"".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}" * 50}).encode() + b"\n" for i in range(400))


class BreakingBody(io.BytesIO):
    """Hands out `allow` bytes, then fails as botocore does when the connection drops."""

    def __init__(self, data: bytes, allow: int):
        super().__init__(data)
        self.allow = allow

    def read(self, size=-1):
        if self.tell() >= len(self.getvalue()):
            return b""
        if self.tell() >= self.allow:
            raise IncompleteReadError(actual_bytes=self.tell(), expected_bytes=len(self.getvalue()))
        size = self.allow - self.tell() if size is None or size < 0 else min(size, self.allow - self.tell())
        return super().read(size)


class DroppingS3:
    def __init__(self, body: bytes, drops: list, etag="e1"):
        self.body, self.drops, self.etag, self.requests = body, list(drops), etag, []

    def get_object(self, Bucket, Key, **kw):  # noqa: N803
        self.requests.append(kw)
        if "IfMatch" in kw and kw["IfMatch"] != self.etag:
            raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "GetObject")
        start = int(kw["Range"].split("=")[1].rstrip("-")) if "Range" in kw else 0
        rest = self.body[start:]
        allow = self.drops.pop(0) - start if self.drops else len(rest)
        return {"Body": BreakingBody(rest, allow), "ContentLength": len(rest), "ETag": f'"{self.etag}"'}


def read(s3):
    report = DatasetReport()
    rows = list(read_records(s3, "s3://data/train.jsonl", "jsonl", None, report, InputLimits()))
    return rows, report


@pytest.mark.parametrize("drops", [[], [1000], [1000, 5000, 5001], [len(ROWS) // 2]], ids=str)
def test_a_dropped_stream_resumes_where_it_stopped_with_the_same_rows_and_digest(drops):
    s3 = DroppingS3(ROWS, drops)
    rows, report = read(s3)
    assert [line for line, _ in rows] == list(range(1, 401))
    assert rows[-1][1]["prompt"] == "q399"
    assert report.sources[0]["sha256"] == hashlib.sha256(ROWS).hexdigest()
    assert report.sources[0]["bytes"] == len(ROWS)
    resumed = s3.requests[1:]
    assert [r["Range"] for r in resumed] == [f"bytes={d}-" for d in drops]
    assert all(r["IfMatch"] == "e1" for r in resumed)


def test_an_object_changed_while_resuming_is_dataset_changed():
    s3 = DroppingS3(ROWS, [1000])
    original = s3.get_object

    def get_object(**kw):
        if "Range" in kw:
            s3.etag = "e2"  # overwritten between the drop and the resume
        return original(**kw)
    s3.get_object = get_object
    with pytest.raises(TrainerFailure) as err:
        read(s3)
    assert err.value.code == ExitCode.DATASET_CHANGED and "changed while it was being read" in str(err.value)


def test_a_stream_that_keeps_dropping_gives_up_as_s3_unavailable():
    s3 = DroppingS3(ROWS, [100 * (i + 1) for i in range(source.MAX_RESUMES + 2)])
    with pytest.raises(TrainerFailure) as err:
        read(s3)
    assert err.value.code == ExitCode.S3_UNAVAILABLE
