"""The cross-process contracts in finetune_api: each written by one component and read by another."""
from __future__ import annotations

import hashlib
import json

import pytest

from finetune_api import digests, manifest, naming, progress, s3, termination
from finetune_api.termination import ExitCode

SHA = "cd" * 32
BASE = "sha256:" + "ab" * 32


def manifest_doc(**over) -> dict:
    doc = manifest.build(
        job={"namespace": "team", "name": "bot", "uid": "u1"}, method="lora", model_type="llama",
        lora={"r": 8, "alpha": 16, "targetModules": ["v_proj", "q_proj"]},
        files=[{"name": "adapter/adapter_config.json", "sha256": SHA, "size": 10},
               {"name": "adapter/adapter_model.safetensors", "sha256": "ef" * 32, "size": 99}],
        base_model={"name": "smollm2-135m-instruct", "uri": None, "digest": BASE},
        dataset={"uri": "s3://data/train.jsonl", "etag": "e1", "validationUri": None}, dataset_stats={"rows": 3},
        config_hash="sha256:" + "00" * 32, trainer_version="0.1.0", trainer_image="", metrics={"eval_loss": 1.0},
        steps=5, tokens=100, wall_seconds=1.5, created_at="2026-12-01T00:00:00Z")
    doc.update(over)
    return doc


# --- AdapterManifest -------------------------------------------------------------------------------------------

def test_the_adapter_digest_is_the_sha256_of_the_manifest_bytes_as_stored():
    raw = manifest.encode(manifest_doc())
    assert manifest.digest(raw) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert manifest.parse(raw).digest == manifest.digest(raw)


def test_what_the_trainer_builds_parses_back_into_what_operator_and_agent_check():
    m = manifest.parse(manifest.encode(manifest_doc()))
    assert (m.method, m.rank, m.alpha, m.target_modules) == ("lora", 8, 16, ("q_proj", "v_proj"))
    assert (m.base_name, m.base_digest) == ("smollm2-135m-instruct", BASE)
    assert [(f.path, f.size) for f in m.files] == [("adapter_config.json", 10), ("adapter_model.safetensors", 99)]
    manifest.require_adapter(m)


def test_encoding_is_stable_so_equal_documents_have_equal_digests():
    a, b = manifest_doc(), dict(reversed(list(manifest_doc().items())))
    assert manifest.encode(a) == manifest.encode(b)


@pytest.mark.parametrize("raw, reason", [
    (b"not json", manifest.INVALID),
    (json.dumps(manifest_doc(kind="Other")).encode(), manifest.INVALID),
    (json.dumps(manifest_doc(files=[])).encode(), manifest.INVALID),
    (json.dumps(manifest_doc(files=[{"name": "adapter/../x", "sha256": SHA}])).encode(), manifest.INVALID),
    (json.dumps(manifest_doc(files=[{"name": "weights.bin", "sha256": SHA}])).encode(), manifest.INVALID),
    (json.dumps(manifest_doc(files=[{"name": "adapter/a", "sha256": "xyz"}])).encode(), manifest.INVALID),
])
def test_a_malformed_manifest_is_refused_with_a_reason(raw, reason):
    with pytest.raises(manifest.ManifestError) as err:
        manifest.parse(raw)
    assert err.value.reason == reason


def test_bytes_that_do_not_hash_to_the_expected_digest_are_a_digest_mismatch():
    with pytest.raises(manifest.ManifestError) as err:
        manifest.parse(manifest.encode(manifest_doc()), "sha256:" + "1" * 64)
    assert err.value.reason == manifest.DIGEST_MISMATCH


@pytest.mark.parametrize("over, reason", [
    ({"method": "full", "lora": None}, manifest.NOT_AN_ADAPTER),
    ({"lora": None}, manifest.INVALID),
    ({"files": [{"name": "adapter/adapter_model.safetensors", "sha256": SHA}]}, manifest.INVALID),
])
def test_only_a_lora_manifest_with_its_config_is_loadable_at_runtime(over, reason):
    m = manifest.parse(manifest.encode(manifest_doc(**over)))
    with pytest.raises(manifest.ManifestError) as err:
        manifest.require_adapter(m)
    assert err.value.reason == reason


@pytest.mark.parametrize("actual, bad", [
    ({"adapter_config.json": (SHA, 10), "adapter_model.safetensors": ("ef" * 32, 99)}, []),
    ({"adapter_config.json": (SHA, None), "adapter_model.safetensors": ("ef" * 32, None)}, []),
    ({"adapter_config.json": (SHA, 10)}, ["adapter_model.safetensors (missing)"]),
    ({"adapter_config.json": ("00" * 32, 10), "adapter_model.safetensors": ("ef" * 32, 99)},
     ["adapter_config.json (expected sha256 cdcdcdcdcdcd…, got 000000000000…)"]),
    ({"adapter_config.json": (SHA, 11), "adapter_model.safetensors": ("ef" * 32, 99)},
     ["adapter_config.json (expected 10 bytes, got 11)"]),
])
def test_stored_files_must_match_every_listed_sha256_and_size(actual, bad):
    assert manifest.mismatches(manifest.parse(manifest.encode(manifest_doc())), actual) == bad


def test_the_file_list_is_every_file_of_the_adapter_folder_with_its_sha256_and_size(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "sub" / "w.bin").write_bytes(b"abc")
    assert manifest.file_entries(tmp_path) == [
        {"name": "adapter/adapter_config.json", "sha256": hashlib.sha256(b"{}").hexdigest(), "size": 2},
        {"name": "adapter/sub/w.bin", "sha256": hashlib.sha256(b"abc").hexdigest(), "size": 3}]


def test_the_adapter_folder_lies_beside_the_manifest():
    assert manifest.adapter_uri("s3://b/out/bot/manifest.json") == "s3://b/out/bot/adapter"


def test_a_folder_digest_ignores_markers_and_depends_on_names_and_contents(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = digests.folder_digest(tmp_path)
    (tmp_path / ".complete").write_text("s3://x")
    (tmp_path / "fto-converted.json").write_text("{}")
    assert digests.folder_digest(tmp_path) == before
    line = f"config.json {hashlib.sha256(b'{}').hexdigest()}\n"
    assert before == "sha256:" + hashlib.sha256(line.encode()).hexdigest()


# --- termination message ---------------------------------------------------------------------------------------

def test_a_termination_message_round_trips_with_its_fields():
    text = termination.encode(ExitCode.SUCCEEDED, "trained", adapterDigest=BASE, steps=5)
    parsed = termination.parse(text)
    assert (parsed.reason, parsed.retryable, parsed.exit_code, parsed.message) == ("Succeeded", False, 0, "trained")
    assert parsed.fields == {"adapterDigest": BASE, "steps": 5}
    assert parsed.to_doc() == json.loads(text)


def test_a_long_message_is_cut_to_the_kubelet_limit_and_stays_json():
    text = termination.encode(ExitCode.DATASET_INVALID, "line 1: bad ünicode\n" * 2000, stats={"rows": 3})
    assert len(text.encode()) <= termination.MAX_BYTES
    assert termination.parse(text).message.endswith("(truncated)")


@pytest.mark.parametrize("text", [None, "", "killed", "[1, 2]", '{"exitCode": 1}', '{"reason": ""}'])
def test_what_is_not_a_trainer_termination_message_parses_to_none(text):
    assert termination.parse(text) is None


@pytest.mark.parametrize("code, retryable", [(ExitCode.PREEMPTED, True), (ExitCode.S3_UNAVAILABLE, True),
                                             (ExitCode.OUT_OF_MEMORY, True), (ExitCode.TRAINER_ERROR, True),
                                             (ExitCode.DATASET_INVALID, False), (ExitCode.DIVERGED, False),
                                             (ExitCode.ACCESS_DENIED, False)])
def test_only_transient_failures_say_they_are_retryable(code, retryable):
    assert termination.parse(termination.encode(code, "m")).retryable is retryable


# --- progress document -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, want", [
    ({}, {"step": 0, "totalSteps": 0, "display": "0", "percent": 0}),
    ({"step": 3, "totalSteps": 12, "trainLoss": 1.5, "etaSeconds": 9.7, "learningRate": 1e-4, "phase": "training"},
     {"step": 3, "totalSteps": 12, "display": "3/12", "percent": 25, "trainLoss": 1.5, "etaSeconds": 9}),
])
def test_the_progress_document_becomes_status_progress(doc, want):
    assert progress.to_status(doc) == want


def test_the_progress_contract_names_every_key_it_copies_to_status():
    assert set(progress.STATUS_KEYS) <= progress.KEYS and set(progress.initial()) <= progress.KEYS
    assert progress.unknown_keys({"step": 1, "trainloss": 2}) == ["trainloss"]


# --- served names ----------------------------------------------------------------------------------------------

def test_a_served_name_is_model_version_and_the_first_eight_hex_of_the_manifest_digest():
    assert naming.served_name("support-bot", "v1", "sha256:" + "0123456789abcdef" * 4) == "support-bot--v1-01234567"


@pytest.mark.parametrize("model, version, digest, field", [
    ("Support", "v1", BASE, "model"), ("bot", "", BASE, "version"), ("bot", "v1/../x", BASE, "version"),
    ("bot", "v1", "sha256:abc", "manifest digest"),
])
def test_a_served_name_refuses_parts_that_are_not_dns_like_or_not_a_digest(model, version, digest, field):
    with pytest.raises(ValueError, match=field):
        naming.served_name(model, version, digest)


# --- S3 URIs and errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, parts", [("s3://bucket/a/b", ("bucket", "a/b")), ("s3://bucket", ("bucket", "")),
                                        ("s3://my.bucket-1/x/", ("my.bucket-1", "x/"))])
def test_an_s3_uri_parses_into_bucket_and_key(uri, parts):
    assert s3.parse_uri(uri) == parts


@pytest.mark.parametrize("uri", ["http://bucket/a", "s3://", "s3://Bucket/a", "bucket/a", ""])
def test_a_string_that_is_not_an_s3_uri_is_refused_naming_it(uri):
    with pytest.raises(s3.InvalidS3Uri, match="not an s3:// URI"):
        s3.parse_uri(uri)


def test_joining_puts_one_slash_between_parts():
    assert s3.join("s3://b/out/", "/adapter/", "x.json") == "s3://b/out/adapter/x.json"


def client_error(code: str):
    from botocore.exceptions import ClientError
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "GetObject")


@pytest.mark.parametrize("code, kind", [("NoSuchKey", s3.NOT_FOUND), ("404", s3.NOT_FOUND), ("NoSuchBucket", s3.NOT_FOUND),
                                        ("AccessDenied", s3.DENIED), ("InvalidAccessKeyId", s3.DENIED),
                                        ("403", s3.DENIED), ("SlowDown", s3.UNAVAILABLE), ("500", s3.UNAVAILABLE)])
def test_s3_error_codes_are_classified_the_same_for_every_component(code, kind):
    assert s3.classify(client_error(code), "reading s3://b/k")[0] == kind


def test_an_unreachable_endpoint_is_unavailable_and_other_errors_are_not_s3_errors():
    from botocore.exceptions import EndpointConnectionError
    kind, message = s3.classify(EndpointConnectionError(endpoint_url="http://x"), "reading s3://b/k")
    assert kind == s3.UNAVAILABLE and "reading s3://b/k" in message
    assert s3.classify(KeyError("x"), "reading") is None
    assert s3.is_not_found(client_error("NoSuchBucket")) and not s3.is_not_found(client_error("AccessDenied"))


def test_the_crd_documents_adapter_digest_as_the_trainer_and_the_operator_compute_it():
    from finetune_api import finetunejob_crd
    field = finetunejob_crd.status()["properties"]["result"]["properties"]["adapterDigest"]
    assert manifest.DIGEST_DOC in field["description"]
