"""Reading a dataset object: bytes from S3 to parsed records, one row at a time.

JSONL streams line by line in bounded memory (a row over the per-row cap is skipped, never held);
Parquet is read as one object. Unparseable or oversized rows are reported with their line numbers
in the DatasetReport (what a bad row is: parsing.py); a file over the per-file cap, an empty file, a
compressed or binary file given as JSON Lines and a Parquet file pyarrow cannot read fail the job
(DatasetInvalid). Only dicts are yielded.
"""
from __future__ import annotations

import dataclasses
import io
import json
from typing import Iterator, Optional

from . import parsing
from . import s3 as s3mod
from .outcomes import ExitCode, TrainerFailure
from .report_types import DatasetReport
from .source import HashingStream, expected as expected_source

# --- reading ----------------------------------------------------------------------------------
def file_format(uri: str, declared: str) -> str:
    if declared != "auto":
        return declared
    return "parquet" if uri.lower().endswith((".parquet", ".pq")) else "jsonl"


# The dataset role (finetune_api.datasets.ROLES) of each spec field an object is read for.
FIELD_ROLES = {"spec.dataset.uri": "train", "spec.dataset.validationUri": "validation",
               "spec.evaluation.regressionUri": "regression"}


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """How much of a dataset file the trainer reads: the file (bytes as stored) and one row. field names
    the spec field the file came from, so the error says what to fix."""
    max_file_bytes: int = 2 * 1024 ** 3
    max_row_bytes: int = 4 * 1024 ** 2
    field: str = "spec.dataset.uri"
    # What the validate pod recorded (finetune_api.datasets sources; the trainer's $FTO_VALIDATED_DATASETS):
    # each object read is checked against its record (source.py). () in the validate pod: nothing to check.
    validated: tuple = ()

    @classmethod
    def of(cls, cfg, field: str) -> "InputLimits":
        rt = cfg.runtime
        return cls(rt.max_file_bytes, rt.max_row_bytes, field, getattr(rt, "validated_datasets", ()))

    @property
    def role(self) -> str:
        return FIELD_ROLES.get(self.field, "train")

    def file_too_big(self, uri: str, size: int, read_so_far: bool = False) -> TrainerFailure:
        what = f"more than {size} bytes" if read_so_far else f"{size} bytes"
        return TrainerFailure(ExitCode.DATASET_INVALID,
                              f"{self.field} {uri} is {what}, over the limit of {self.max_file_bytes} bytes per file "
                              "(the trainer's runtime.maxFileBytes): split it into smaller files or ask the platform team")

    def row_too_big(self, line: int, size: int) -> str:
        return (f"line {line}: the row is {size} bytes, over the limit of {self.max_row_bytes} bytes per row "
                f"(the trainer's runtime.maxRowBytes) in {self.field}")


def read_records(s3, uri: str, fmt: str, max_rows: Optional[int], report: DatasetReport,
                 limits: InputLimits = InputLimits()) -> Iterator[tuple[int, object]]:
    """(line number, parsed record) per row; unparseable or oversized rows are reported, not yielded.
    A file over limits.max_file_bytes fails the job (DatasetInvalid) before or while it is read."""
    stream = HashingStream(s3, uri, limits.role, limits.field,
                           expected_source(limits.validated, limits.role, limits.field, uri))
    report.source_etag = stream.etag
    if stream.content_length is not None and stream.content_length > limits.max_file_bytes:
        raise limits.file_too_big(uri, stream.content_length)
    count = 0
    if fmt == "parquet":
        rows = _parquet(stream, uri, report, limits)
    else:
        rows = _jsonl(stream, uri, report, limits)
    for line, record in rows:
        if max_rows is not None and count >= max_rows:
            break
        count += 1
        yield line, record
    report.sources.append(stream.finish().to_doc())  # its sha256 checked against the validated one


def _parquet(body, uri: str, report: DatasetReport, limits: InputLimits):
    with s3mod.errors(f"reading {uri}"):
        raw = body.read(limits.max_file_bytes + 1)  # the store's ContentLength is not trusted alone
    if len(raw) > limits.max_file_bytes:
        raise limits.file_too_big(uri, limits.max_file_bytes, read_so_far=True)
    rows = _parquet_rows(raw, uri, limits)
    del raw
    if not rows:
        raise TrainerFailure(ExitCode.DATASET_INVALID,
                             f"{limits.field} {uri} has no rows (the Parquet file is empty)")
    for line, record in enumerate(rows, start=1):
        size = len(json.dumps(record, default=str).encode())
        if size > limits.max_row_bytes:
            report.add_error(limits.row_too_big(line, size))
            continue
        yield line, record


def _parquet_rows(raw: bytes, uri: str, limits: InputLimits) -> list:
    """The file's rows as dicts; a file pyarrow cannot read (not Parquet, truncated, corrupt) is DatasetInvalid."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    looks = parsing.looks_like(raw[:8]) if not raw.startswith(b"PAR1") else None
    hint = f" (it looks like {looks[0]})" if looks else ""
    try:
        return pq.read_table(io.BytesIO(raw)).to_pylist()
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TrainerFailure(ExitCode.DATASET_INVALID,
                             f"{limits.field} {uri} is not a readable Parquet file{hint}: {reason}") from None


def bounded_lines(chunks, max_row_bytes: int, max_file_bytes: int):
    """(line number, the line's bytes, 0) per line of a byte stream, or (line number, None, its size) for a
    line over max_row_bytes, whose bytes are skipped, never held. OverflowError(bytes read) once more than
    max_file_bytes were read."""
    pending, skipping, line, total = b"", 0, 0, 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_file_bytes:
            raise OverflowError(total)
        parts = chunk.split(b"\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if skipping:
                skipping += len(part)
            elif len(pending) + len(part) > max_row_bytes:
                skipping, pending = len(pending) + len(part), b""
            else:
                pending += part
            if last:
                break
            line += 1
            yield (line, None, skipping) if skipping else (line, pending, 0)
            pending, skipping = b"", 0
    if pending or skipping:
        yield (line + 1, None, skipping) if skipping else (line + 1, pending, 0)


def _jsonl(body, uri: str, report: DatasetReport, limits: InputLimits):
    chunks = body.iter_chunks(1024 * 1024) if hasattr(body, "iter_chunks") else iter(lambda: body.read(1024 * 1024), b"")
    lines = bounded_lines(parsing.sniffed(chunks, lambda what, fix: _not_text(uri, limits, what, fix)),
                          limits.max_row_bytes, limits.max_file_bytes)
    offset, rows = 0, 0  # where the line starts in the file; lines that are not blank
    while True:
        try:
            with s3mod.errors(f"reading {uri}"):
                item = next(lines, None)
        except OverflowError as err:
            raise limits.file_too_big(uri, int(err.args[0]), read_so_far=True) from None
        if item is None:
            break
        line, raw, skipped = item
        start, offset = offset, offset + (skipped if raw is None else len(raw)) + 1
        if raw is not None and not raw.strip():
            continue
        rows += 1
        if raw is None:
            report.add_error(limits.row_too_big(line, skipped))
            continue
        record, problem = parsing.parse_row(raw, line, start)
        if problem:
            report.add_error(problem)
            continue
        yield line, record
    if not rows:
        raise TrainerFailure(ExitCode.DATASET_INVALID,
                             f"{limits.field} {uri} has no rows (the object is empty or blank)")


def _not_text(uri: str, limits: InputLimits, what: str, fix: str):
    raise TrainerFailure(ExitCode.DATASET_INVALID,
                         f"{limits.field} {uri} looks like {what}, not JSON Lines: {fix}")
