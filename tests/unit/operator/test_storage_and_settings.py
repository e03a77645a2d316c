"""Secrets -> S3 credentials, manifest checks, and the operator's environment settings."""
import base64
import json

import pytest

from finetune_operator import storage
from finetune_operator.builders.settings import OperatorSettings
from finetune_operator.runtime.events import event_body


def b64(text):
    return base64.b64encode(text.encode()).decode()


CREDS = {"secretRef": {"name": "s3"}, "endpoint": "http://127.0.0.1:9000"}


OPTED_IN = {"labels": {"finetune.fto.dev/credentials": "true"}}


def test_credentials_come_from_the_named_keys():
    secret = {"metadata": OPTED_IN, "data": {"AWS_ACCESS_KEY_ID": b64("id"), "AWS_SECRET_ACCESS_KEY": b64("key")}}
    kwargs = storage.credentials_from_secret(secret, CREDS)
    assert kwargs["aws_access_key_id"] == "id" and kwargs["endpoint_url"] == "http://127.0.0.1:9000"


def test_missing_secret_or_keys_are_credentials_missing_naming_them():
    with pytest.raises(storage.StorageError) as err:
        storage.credentials_from_secret(None, CREDS)
    assert err.value.reason == "CredentialsMissing" and "'s3' does not exist" in err.value.message
    with pytest.raises(storage.StorageError) as err:
        storage.credentials_from_secret({"metadata": OPTED_IN, "data": {"AWS_ACCESS_KEY_ID": b64("id")}}, CREDS)
    assert "AWS_SECRET_ACCESS_KEY" in err.value.message


def test_manifest_must_list_files_with_digests_and_no_parent_paths():
    good = {"kind": "AdapterManifest", "files": [{"name": "adapter/a.safetensors", "sha256": "0" * 64}]}
    assert storage.parse_manifest(json.dumps(good).encode(), "s3://b/m.json")["files"]
    for bad in ({"kind": "Other", "files": good["files"]}, {"kind": "AdapterManifest", "files": []},
                {"kind": "AdapterManifest", "files": [{"name": "../x", "sha256": "0" * 64}]}):
        with pytest.raises(storage.StorageError) as err:
            storage.parse_manifest(json.dumps(bad).encode(), "s3://b/m.json")
        assert err.value.reason == "ManifestInvalid"


def test_settings_from_environment():
    s = OperatorSettings.from_env({"FTO_MAX_RUNNING_JOBS_PER_NAMESPACE": "3", "FTO_VALIDATE_NODE_SELECTOR":
                                   '{"pool": "cpu"}', "FTO_PROMETHEUS_URL": "http://127.0.0.1:9090"})
    assert s.max_running_jobs_per_namespace == 3 and s.max_gpus_per_namespace is None
    assert s.validate_node_selector == {"pool": "cpu"} and s.prometheus_url == "http://127.0.0.1:9090"


def test_events_point_at_the_object():
    obj = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "FineTuneJob",
           "metadata": {"name": "bot", "namespace": "team", "uid": "u1"}}
    body = event_body(obj, "Warning", "DatasetInvalid", "line 2: not valid JSON")
    assert body["involvedObject"]["uid"] == "u1" and body["metadata"]["name"].startswith("bot.")
    assert body["type"] == "Warning" and body["reportingComponent"] == "finetune-operator"
