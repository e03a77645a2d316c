"""The trainer's validate-only entry point on malformed bytes in MinIO: each ends in DatasetInvalid
(exit 11, not retryable) naming the line and what is wrong, never TrainerError (retried).

Before the parsing rework these exited 1 (TrainerError): AttributeError on invalid UTF-8 and
RecursionError on deep nesting; a gzip file was read as JSON lines of garbage.
"""
import gzip
import json
import subprocess
import uuid

import pytest
from test_trainer import TRAINER, job, termination, trainer_env

GOOD = json.dumps({"prompt": "Where is my order?", "completion": "Soon."}).encode()


@pytest.fixture(scope="module")
def bucket(s3, base_model_uri):
    name = f"malformed-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("name, body, words", [
    ("utf8", GOOD + b"\n" + b'{"prompt": "caf\xe9", "completion": "x"}\n' + GOOD, "line 2: not valid UTF-8"),
    ("gzip", gzip.compress(GOOD + b"\n" + GOOD), "looks like gzip-compressed data"),
    ("deep", GOOD + b"\n" + b'{"prompt": "p", "completion": "c", "m": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
     "line 2: arrays/objects nested 5001 deep"),
])
def test_malformed_bytes_end_in_dataset_invalid(cluster, bucket, s3, tmp_path, name, body, words):
    s3.put_object(Bucket=bucket, Key=f"data/{name}.jsonl", Body=body)
    path, doc = job(bucket, name, tmp_path, dataset_key=f"data/{name}.jsonl", maxSteps=1)
    run = subprocess.run(TRAINER + ["train", "--config", str(path), "--validate-only"], env=trainer_env(cluster),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 11, run.stderr[-2000:]
    message = termination(doc)
    assert message["reason"] == "DatasetInvalid" and message["retryable"] is False, message
    assert words in message["message"], message
