"""spec.dataSafety in decide: the moderation endpoint is refused before any pod when not listed,
the gate's counts reach status.datasetStats.safety (counts, type names, lines; nothing else), a
Warning Event names them, and DatasetUnsafe is a permanent failure."""
from __future__ import annotations

import dataclasses
import json

import pytest

from finetune_api import termination as term
from finetune_operator import status as st
from finetune_operator.builders import trainer_config
from finetune_operator.builders.settings import OperatorSettings, moderation_endpoints
from finetune_operator.finetunejob import decide as D, safety

from ftj_fixtures import NOW, SETTINGS, Preflight, cond, ftj, pod, snapshot, termination

VALIDATING = cond("Validated", "False", "Validating")
GUARD = dataclasses.replace(SETTINGS, moderation_endpoints={"guard": "http://127.0.0.1:9000"})
# What the gate reports (safety/gate.py's REPORT shape), with a planted value where none may be.
GATE_REPORT = {
    "pii": {"rows": 3, "entities": {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}, "lines": [4, 9, 12], "action": "Warn",
            "value": "jane@example.com"},
    "secrets": {"rows": 1, "entities": {"AWS Access Key": 1}, "lines": [7], "action": "Redact",
                "sample": "AKIAIOSFODNN7EXAMPLE"},
    "nearDuplicates": {"rows": 0, "action": "Warn"},
    "changed": {"train": 4, "validation": 0, "regression": 0}, "dropped": {"train": 0},
}


def moderated(endpoint: str, action: str = "Fail") -> dict:
    return ftj(dataSafety={"moderation": {"endpoint": endpoint, "action": action}})


def decide(obj, settings=SETTINGS, config_map_exists=False, **children):
    return D.decide(snapshot(obj, settings, config_map_exists=config_map_exists, preflight=Preflight(), **children),
                    NOW)


def validated(d) -> dict:
    return next(c for c in d.status["conditions"] if c["type"] == "Validated")


@pytest.mark.parametrize("settings, name", [(SETTINGS, "guard"), (GUARD, "other")])
def test_a_moderation_endpoint_not_in_the_admins_list_fails_the_job_before_any_pod(settings, name):
    d = decide(moderated(name), settings)
    assert not d.actions and d.status["phase"] == "Failed"
    c = validated(d)
    assert (c["status"], c["reason"]) == ("False", safety.REASON_MODERATION_NOT_ALLOWED)
    assert "spec.dataSafety.moderation.endpoint" in c["message"] and repr(name) in c["message"]
    assert "127.0.0.1" not in c["message"]  # the list names endpoints, never their URLs


@pytest.mark.parametrize("obj", [moderated("guard"), ftj(dataSafety={}), ftj()])
def test_a_listed_moderation_endpoint_or_none_goes_on_to_the_validate_pod(obj):
    d = decide(obj, GUARD)
    assert d.status["phase"] == "Validating"
    assert [a.body["kind"] for a in d.actions] == ["ConfigMap", "Pod"]


@pytest.mark.parametrize("obj, url", [
    (moderated("guard"), "http://127.0.0.1:9000"),
    (moderated("guard", "Off"), None),
    (ftj(dataSafety={}), None),
    (moderated("other"), None),
])
def test_the_trainer_config_carries_the_resolved_moderation_url_only_when_moderation_is_on(obj, url):
    runtime = json.loads(trainer_config.document(obj, GUARD))["runtime"]
    assert runtime.get("moderationUrl") == url


def test_the_gates_counts_go_into_status_and_a_warning_event_without_any_value():
    obj = ftj(status={"phase": "Validating", "conditions": [VALIDATING]})
    msg = termination("Succeeded", datasetStats={"rows": 40, "tokens": 900, "safety": GATE_REPORT})
    d = decide(obj, validate_pod=pod("Succeeded", msg), config_map_exists=True)
    got = d.status["datasetStats"]["safety"]
    assert got["pii"] == {"rows": 3, "entities": {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}, "lines": [4, 9, 12],
                          "action": "Warn"}
    assert got["secrets"]["entities"] == {"AWS Access Key": 1} and got["changed"]["train"] == 4
    warning = next(e for e in d.events if e[1] == safety.REASON_FINDINGS)
    assert warning[0] == "Warning"
    assert warning[2] == ("data-safety: 3 PII (EMAIL_ADDRESS 2, PHONE_NUMBER 1) at lines 4, 9, 12; "
                          "1 secret at line 7")
    text = json.dumps([d.status, d.events])
    assert "jane@example.com" not in text and "AKIAIOSFODNN7EXAMPLE" not in text
    assert d.status["phase"] == "Queued"  # Warn and Redact do not stop the job


def test_a_clean_report_posts_no_data_safety_event():
    obj = ftj(status={"phase": "Validating", "conditions": [VALIDATING]})
    clean = {"pii": {"rows": 0, "action": "Fail"}, "secrets": {"rows": 0, "action": "Fail"}}
    msg = termination("Succeeded", datasetStats={"rows": 4, "tokens": 90, "safety": clean})
    d = decide(obj, validate_pod=pod("Succeeded", msg), config_map_exists=True)
    assert d.status["datasetStats"]["safety"]["pii"] == {"rows": 0, "action": "Fail"}
    assert all(e[1] != safety.REASON_FINDINGS for e in d.events)


def test_dataset_unsafe_fails_the_job_permanently_with_the_counts_in_status():
    obj = ftj(status={"phase": "Validating", "conditions": [VALIDATING]})
    message = "data-safety: 3 PII (EMAIL_ADDRESS 2, PHONE_NUMBER 1) at lines 4, 9, 12; 1 secret at line 7"
    pod_msg = termination(st.REASON_DATASET_UNSAFE, message=message, stats={"rows": 40, "safety": GATE_REPORT})
    d = decide(obj, validate_pod=pod("Failed", pod_msg, int(term.ExitCode.DATASET_UNSAFE)))
    assert (d.status["phase"], d.status["reason"]) == ("Failed", "DatasetUnsafe")
    assert validated(d)["reason"] == "DatasetUnsafe" and "lines 4, 9, 12" in validated(d)["message"]
    assert d.status["datasetStats"]["safety"]["pii"]["lines"] == [4, 9, 12]
    assert not [a for a in d.actions if (a.body or {}).get("kind") in ("Job", "Pod")]  # no GPU is requested
    assert term.ExitCode.DATASET_UNSAFE not in term.RETRYABLE


@pytest.mark.parametrize("report, expected", [
    (None, None),
    ({}, None),
    ({"pii": {"rows": 1, "lines": list(range(1, 40))}}, {"pii": {"rows": 1, "lines": list(range(1, 21))}}),
    ({"pii": {"rows": "3", "entities": {"EMAIL_ADDRESS": 1, "x@y.z <b>": 1}, "action": "Explode"}},
     {"pii": {"entities": {"EMAIL_ADDRESS": 1}}}),
    ({"leakage": {"rows": 2, "lines": [3, 5], "trainLines": [1, 2]}, "unknown": {"rows": 1}},
     {"leakage": {"rows": 2, "lines": [3, 5], "trainLines": [1, 2]}}),
    ({"changed": {"train": 2, "evil": 1, "validation": -1}}, {"changed": {"train": 2}}),
])
def test_status_keeps_only_known_keys_counts_type_names_and_capped_lines(report, expected):
    assert safety.status_doc(report) == expected


@pytest.mark.parametrize("report, expected", [
    ({"pii": {"rows": 0}}, None),
    ({"pii": {"rows": 1, "entities": {"EMAIL_ADDRESS": 1}, "lines": [2]}},
     "data-safety: 1 PII (EMAIL_ADDRESS 1) at line 2"),
    ({"specialTokens": {"rows": 2, "lines": [1, 5]}, "leakage": {"rows": 1, "lines": [3]}},
     "data-safety: 2 rows with special tokens at lines 1, 5; 1 held-out row leaking training data at line 3"),
    ({"secrets": {"rows": 2, "entities": {"AWS Access Key": 1, "Private Key": 2}}}, "data-safety: 3 secrets"),
])
def test_the_event_names_counts_and_lines_per_check(report, expected):
    assert safety.event_message(safety.status_doc(report)) == expected


@pytest.mark.parametrize("value, ok", [
    ({"guard": "http://127.0.0.1:9000"}, True),
    ({"guard": "https://guard.safety.svc:8443/v1"}, True),
    ({"guard": "http://169.254.169.254/"}, False),
    ({"guard": "http://0251.0376.0251.0376/"}, False),
    ({"guard": "file:///etc/passwd"}, False),
    ({"Guard!": "http://127.0.0.1"}, False),
    (["http://127.0.0.1"], False),
])
def test_the_admins_moderation_endpoints_must_pass_the_endpoint_checks(value, ok):
    env = {"FTO_MODERATION_ENDPOINTS": json.dumps(value)}
    if ok:
        assert OperatorSettings.from_env(env).moderation_endpoints == value
    else:
        with pytest.raises(ValueError):
            moderation_endpoints(value)


def test_the_moderation_endpoint_flag_adds_to_the_env_list():
    from finetune_operator.__main__ import parse_args, with_moderation_flags
    args = parse_args(["--moderation-endpoint", "guard=http://127.0.0.1:9000"])
    settings = with_moderation_flags(GUARD, args.moderation_endpoint)
    assert settings.moderation_endpoints == {"guard": "http://127.0.0.1:9000"}
    with pytest.raises(ValueError):
        with_moderation_flags(SETTINGS, ["meta=http://169.254.169.254"])
