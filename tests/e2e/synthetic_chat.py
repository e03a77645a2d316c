"""Synthetic chat JSONL at any size, generated deterministically and streamed to S3 as a multipart
upload (never written to local disk), with an optional malformed row planted at a fraction of the
file. Used by tests/e2e/test_dataset_scale.py and bench/validate_throughput.py.

Rows are ~1 KB like a real support-chat export: a system prompt on some rows, 2-3 user/assistant
turns of varied text (a seeded word stream, a ticket number, now and then an e-mail address, so a
PII check has something to find).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Iterator, Optional

PART_BYTES = 8 * 1024 * 1024  # S3 parts must be >= 5 MiB (except the last)
MALFORMED = b'{"messages": [{"role": "user", "content": "where is my order?"}, {"role": "assistant", "content": "'
_WORDS = ("order ticket refund account password reset invoice delivery shipping address billing plan upgrade "
          "cancel subscription payment card charge twice error page login email confirm support agent reply "
          "customer urgent please thanks kindly help issue resolved escalate manager warehouse tracking number "
          "parcel damaged replacement return label weeks days yesterday today tomorrow morning evening price "
          "discount coupon code expired valid region country language settings profile update mobile app "
          "browser cache cookie session timeout server maintenance outage status incident report feature "
          "request bug crash screen button click download upload file size limit storage quota team member "
          "invite role admin permission access denied granted policy terms privacy data export delete").split()
SIZE_UNITS = {"KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "KIB": 1024, "MIB": 1024 ** 2, "GIB": 1024 ** 3, "B": 1}


def parse_size(text: str) -> int:
    """'10MB' -> 10_000_000, '1GiB' -> 1073741824, '512' -> 512."""
    t = text.strip().upper()
    for unit in sorted(SIZE_UNITS, key=len, reverse=True):
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * SIZE_UNITS[unit])
    return int(t)


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choices(_WORDS, k=words))
    return text[0].upper() + text[1:] + "."


def row(rng: random.Random, i: int) -> dict:
    """One ~1 KB chat row; the same rng state gives the same row."""
    messages = [{"role": "system", "content": "You are the support assistant of Example Shop. Answer briefly."}] \
        if rng.random() < 0.5 else []
    for turn in range(rng.randint(2, 3)):
        user = f"Ticket {100000 + i}-{turn}: " + " ".join(_sentence(rng, rng.randint(6, 16)) for _ in range(rng.randint(1, 2)))
        if i % 97 == 0 and turn == 0:
            user += f" You can reach me at user{i}@example.com."
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant",
                         "content": " ".join(_sentence(rng, rng.randint(8, 18)) for _ in range(rng.randint(1, 3)))})
    return {"messages": messages}


@dataclasses.dataclass
class Generated:
    bytes: int = 0
    rows: int = 0
    bad_line: Optional[int] = None  # the malformed row's line number (1-based), if one was planted
    sha256: str = ""


def lines(target_bytes: int, seed: int = 0, bad_at: Optional[float] = None,
          info: Optional[Generated] = None) -> Iterator[bytes]:
    """JSONL lines (with their newline) until at least target_bytes were produced. With bad_at, the
    first line after that fraction of target_bytes is a truncated JSON object instead of a row."""
    rng, info = random.Random(seed), info if info is not None else Generated()
    bad_from = None if bad_at is None else int(target_bytes * bad_at)
    while info.bytes < target_bytes:
        if bad_from is not None and info.bad_line is None and info.bytes >= bad_from:
            data = MALFORMED + b"\n"
            info.bad_line = info.rows + 1
        else:
            data = json.dumps(row(rng, info.rows), separators=(", ", ": ")).encode() + b"\n"
        info.rows += 1
        info.bytes += len(data)
        yield data


def upload(s3, bucket: str, key: str, target_bytes: int, seed: int = 0, bad_at: Optional[float] = None,
           metadata: Optional[dict] = None) -> Generated:
    """Streams lines(...) to s3://bucket/key as a multipart upload (one part in memory at a time)."""
    info, digest = Generated(), hashlib.sha256()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata or {})["UploadId"]
    parts, buf = [], bytearray()
    try:
        for data in lines(target_bytes, seed, bad_at, info):
            buf += data
            if len(buf) >= PART_BYTES:
                parts.append(_part(s3, bucket, key, upload_id, len(parts) + 1, bytes(buf), digest))
                buf.clear()
        if buf or not parts:
            parts.append(_part(s3, bucket, key, upload_id, len(parts) + 1, bytes(buf), digest))
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    info.sha256 = digest.hexdigest()
    return info


def _part(s3, bucket, key, upload_id, number: int, body: bytes, digest) -> dict:
    digest.update(body)
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)["ETag"]
    return {"PartNumber": number, "ETag": etag}
