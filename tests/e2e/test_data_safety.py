"""spec.dataSafety end to end: the validate pod's gate on a dataset with a planted email, phone
number and AWS-style key, through the real operator and small real LoRA jobs on the process node.

- pii and secrets Fail: the job ends Failed/DatasetUnsafe before any trainer Job, naming lines and
  counts, and none of the three values appears in status, events, the validate pod's termination
  message or the operator's log;
- the same with Redact: the job trains on the redacted copy under the output prefix (placeholders
  instead of the values), and the ModelVersion's lineage has the copy's sha256 with derivedFrom
  the original's;
- a moderation endpoint that is not on the operator's list is refused before any pod.
"""
from __future__ import annotations

import hashlib
import json
import time

import pytest

import lorajobs
from operator_process import OperatorProcess

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
EMAIL, PHONE, AWS_KEY = "jane.doe@example.com", "+44 20 7946 0958", "AKIAIOSFODNN7EXAMPLE"
PLANTED = (EMAIL, PHONE, AWS_KEY)
# (line, row): lines 2, 4 and 5 carry the planted values; the rest are demo rows.
ROWS = [
    {"prompt": "My Vela smart plug arrived with a crushed box.", "completion": "Sorry, a replacement is on its way."},
    {"prompt": f"Please send the invoice to {EMAIL}, thanks.", "completion": "Done: the invoice is in your inbox."},
    {"prompt": "I was charged twice for my Nimbus headphones.", "completion": "We refunded the duplicate payment."},
    {"prompt": f"Call me back on {PHONE} about my broken kettle.", "completion": "We will call you within a day."},
    {"prompt": f"Our deploy script has aws_access_key_id = {AWS_KEY} in it, is that ok?",
     "completion": "Rotate that key now and keep keys out of scripts."},
    {"prompt": "Where can I download the manual for the Orbit lamp?", "completion": "On the Orbit lamp's product page."},
    {"prompt": "Can I change the delivery address of order 5521?", "completion": "Yes, reply with the new address."},
    {"prompt": "The app logs me out every few minutes.", "completion": "Update the app; version 4.2 fixes it."},
]
BODY = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


@pytest.fixture
def operator(cluster, namespace, tmp_path):
    """The operator watching this test's namespace, with one moderation endpoint on its list."""
    log = tmp_path / "operator.log"
    proc = OperatorProcess(cluster, [namespace], log,
                           env={"FTO_MODERATION_ENDPOINTS": json.dumps({"guard": "http://127.0.0.1:9"})}).start()
    yield log
    proc.stop()


@pytest.fixture
def bucket(s3, namespace, core, base_model_uri):
    name = lorajobs.data_bucket(s3, core, namespace, "safety")
    s3.put_object(Bucket=name, Key="data/tickets.jsonl", Body=BODY)
    return name


def job(cluster, bucket: str, name: str, action: str, **output) -> dict:
    body = lorajobs.lora_job(cluster, bucket, name, steps=2, dataset_key="data/tickets.jsonl", **output)
    body["spec"]["dataSafety"] = {"pii": {"action": action, "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER"]},
                                  "secrets": {"action": action}}
    return body


def wait_finished(crds, namespace: str, name: str, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", name)
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Cancelled"):
            return obj
        time.sleep(1)
    raise AssertionError(f"{name} did not finish: {obj.get('status')}")


def events_of(core, namespace: str, name: str) -> list:
    return [(e.type, e.reason, e.message) for e in core.list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.involved_object.kind == "FineTuneJob"]


def termination_message(core, namespace: str, pod: str) -> str:
    status = core.read_namespaced_pod(pod, namespace).status
    return "".join((cs.state.terminated.message or "") for cs in status.container_statuses or []
                   if cs.state and cs.state.terminated)


def assert_no_planted_value(*texts: str) -> None:
    for text in texts:
        for value in PLANTED:
            assert value not in text, f"{value!r} leaked: ...{text[max(0, text.find(value) - 200):][:400]}"


def test_planted_pii_and_a_secret_under_fail_end_in_dataset_unsafe_naming_lines_and_counts_but_no_value(
        cluster, crds, core, batch, namespace, operator, bucket):
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", job(cluster, bucket, "unsafe",
                                                                                        "Fail"))
    obj = wait_finished(crds, namespace, "unsafe", timeout=300)
    status = obj["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "DatasetUnsafe"), (status, operator.read_text()[-3000:])
    validated = next(c for c in status["conditions"] if c["type"] == "Validated")
    assert validated["reason"] == "DatasetUnsafe"
    for fragment in ("EMAIL_ADDRESS", "PHONE_NUMBER", "2", "4", "5"):
        assert fragment in validated["message"], validated["message"]
    safety = status["datasetStats"]["safety"]
    assert safety["pii"]["lines"] == [2, 4] and safety["pii"]["entities"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert safety["secrets"]["lines"] == [5] and safety["secrets"]["rows"] == 1
    assert batch.list_namespaced_job(namespace).items == [], "no trainer Job (no GPU) for unsafe data"
    assert status.get("attempts", 0) == 0
    events = events_of(core, namespace, "unsafe")
    assert any(t == "Warning" and r == "DatasetUnsafe" for t, r, _ in events), events
    message = termination_message(core, namespace, "unsafe-validate")
    assert json.loads(message)["reason"] == "DatasetUnsafe"
    time.sleep(2)  # the operator's last lines for this pass
    assert_no_planted_value(json.dumps(obj), json.dumps(events), message, operator.read_text())


def test_the_same_data_under_redact_trains_on_the_redacted_copy_whose_digest_is_in_the_lineage(
        cluster, crds, core, namespace, operator, bucket, s3):
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", job(
        cluster, bucket, "redacted", "Redact", registerModelVersion={"model": "safe-bot", "version": "v1"}))
    obj = wait_finished(crds, namespace, "redacted")
    status = obj["status"]
    assert status["phase"] == "Succeeded", (status, operator.read_text()[-3000:])
    copy_key = "out/redacted/dataset/train.jsonl"
    copy = s3.get_object(Bucket=bucket, Key=copy_key)["Body"].read()
    text = copy.decode()
    assert "<EMAIL_ADDRESS>" in text and "<PHONE_NUMBER>" in text
    assert_no_planted_value(text)
    assert len(text.splitlines()) == len(ROWS)  # redacted, not dropped
    assert status["datasetStats"]["safety"]["pii"]["action"] == "Redact"
    findings = [m for t, r, m in events_of(core, namespace, "redacted") if (t, r) == ("Warning", "DataSafetyFindings")]
    assert findings, events_of(core, namespace, "redacted")
    assert "2 PII (EMAIL_ADDRESS 1, PHONE_NUMBER 1) at lines 2, 4" in findings[0] and "1 secret at line 5" in findings[0]

    copy_uri, original_uri = f"s3://{bucket}/{copy_key}", f"s3://{bucket}/data/tickets.jsonl"
    mv = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "safe-bot-v1")
    deadline = time.monotonic() + 60
    while not ((mv.get("status") or {}).get("lineage") or {}).get("datasets") and time.monotonic() < deadline:
        time.sleep(1)
        mv = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "safe-bot-v1")
    sources = mv["status"]["lineage"]["datasets"]
    trained = next(s for s in sources if s["role"] == "train" and s["uri"] == copy_uri)
    assert trained["sha256"] == hashlib.sha256(copy).hexdigest()
    assert trained["derivedFrom"] == {"uri": original_uri, "sha256": hashlib.sha256(BODY).hexdigest()}
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="out/redacted/manifest.json")["Body"].read())
    assert any(s["uri"] == copy_uri for s in manifest["dataset"]["sources"])
    assert_no_planted_value(json.dumps(obj), json.dumps(events_of(core, namespace, "redacted")),
                            operator.read_text())


def test_a_moderation_endpoint_off_the_operators_list_is_refused_before_any_pod(
        cluster, crds, core, namespace, operator, bucket):
    body = job(cluster, bucket, "moderated", "Warn")
    body["spec"]["dataSafety"]["moderation"] = {"endpoint": "not-listed", "action": "Fail"}
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", body)
    obj = wait_finished(crds, namespace, "moderated", timeout=60)
    status = obj["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ModerationEndpointNotAllowed")
    assert "spec.dataSafety.moderation.endpoint" in status["message"] and "guard" in status["message"]
    assert "127.0.0.1" not in json.dumps(status)
    assert core.list_namespaced_pod(namespace).items == []
