"""The operator's S3 identity and Secret reads for tenants' objects (issue 13, findings 3 and 10):
only opted-in Secrets, never its own identity unless the admin allowed it, never outside a
namespace's allowed buckets/prefixes."""
import json

import pytest

from finetune_operator import credentials, s3access, storage

LABEL = {"finetune.fto.dev/credentials": "true"}
POLICY = s3access.parse(json.dumps({
    "enabled": True, "buckets": ["shared"],
    "namespaces": {"team-a": {"prefixes": ["s3://shared/team-a", "s3://models/"], "operatorIdentity": True},
                   "team-b": {"prefixes": ["s3://shared/team-b/"]},
                   "team-c": {"buckets": ["c-only"], "operatorIdentity": True}}}))


@pytest.mark.parametrize("secret, reason", [
    (None, "CredentialsMissing"),
    ({"metadata": {"name": "s"}, "data": {"k": "dg=="}}, "SecretNotOptedIn"),
    ({"metadata": {"labels": {"finetune.fto.dev/credentials": "yes"}}, "data": {}}, "SecretNotOptedIn"),
    ({"metadata": {"labels": LABEL}, "data": {}}, None),
])
def test_only_a_secret_labelled_as_credentials_is_used(secret, reason):
    err = credentials.refusal(secret, "s", "spec.credentials.secretRef")
    assert (err.reason if err else None) == reason
    if err:
        assert "spec.credentials.secretRef" in err.message and "'s'" in err.message


def test_a_refused_secret_never_puts_its_value_in_the_message():
    secret = {"metadata": {"name": "admin"}, "data": {"token": "c2VjcmV0LXZhbHVl"}}  # "secret-value"
    with pytest.raises(storage.StorageError) as err:
        storage.credentials_from_secret(secret, {"secretRef": {"name": "admin", "sessionTokenKey": "token"}})
    assert err.value.reason == "SecretNotOptedIn"
    assert "secret-value" not in err.value.message and "c2VjcmV0LXZhbHVl" not in err.value.message


class FakeCore:
    def __init__(self, secret):
        self.secret, self.asked = secret, []

    def read_namespaced_secret(self, name, ns, **_):
        self.asked.append((name, ns))

        class Resp:
            data = json.dumps(self.secret).encode()
        return Resp()


def test_read_reads_the_named_secret_in_the_objects_own_namespace_and_refuses_it_unlabelled():
    core = FakeCore({"metadata": {"name": "tok"}, "data": {"token": "eA=="}})
    with pytest.raises(storage.StorageError) as err:
        credentials.read(core, "team-b", "tok", "spec.servingTarget.adminTokenSecretRef")
    assert core.asked == [("tok", "team-b")] and err.value.reason == "SecretNotOptedIn"
    core.secret["metadata"]["labels"] = LABEL
    assert credentials.read(core, "team-b", "tok", "f")["data"] == {"token": "eA=="}


@pytest.mark.parametrize("namespace, allowed", [
    ("team-a", True),        # operatorIdentity and prefixes: the admin bound the operator's identity
    ("team-b", False),       # prefixes but no operatorIdentity
    ("team-c", False),       # operatorIdentity without prefixes is not enough
    ("elsewhere", False),
])
def test_the_operators_own_identity_only_where_the_admin_bound_it_to_prefixes(namespace, allowed):
    err = s3access.identity_refusal(POLICY, namespace)
    assert (err is None) == allowed
    if err:
        assert err.reason == "CredentialsRequired" and "spec.credentials is required" in err.message


@pytest.mark.parametrize("namespace, bucket, key, allowed", [
    ("team-a", "shared", "team-a/out/job/manifest.json", True),
    ("team-a", "shared", "team-a", True),                 # the prefix itself (a listing)
    ("team-a", "shared", "team-ab/out/", False),          # a sibling that only shares the first letters
    ("team-a", "models", "base/config.json", True),
    ("team-b", "shared", "team-a/out/job/", False),       # another team's prefix in the shared bucket
    ("team-b", "shared", "team-b/../team-a/out/", False),  # dot segments never
    ("team-b", "shared", "team-b/./x", False),
    ("team-b", "shared", "", False),                      # the whole bucket
    ("team-c", "c-only", "anything", True),               # buckets, no prefixes
    ("team-c", "shared", "anything", True),               # cluster-wide bucket
    ("team-c", "other", "x", False),
    ("elsewhere", "shared", "x", True),
])
def test_every_location_is_checked_against_the_namespaces_prefixes_or_buckets(namespace, bucket, key, allowed):
    err = s3access.location_refusal(POLICY, namespace, bucket, key)
    assert (err is None) == allowed
    if err:
        assert err.reason == "S3LocationForbidden"


@pytest.mark.parametrize("text", ["{", "[]", '{"namespaces": {"a": {"prefixes": ["http://x/"]}}}'])
def test_a_malformed_policy_is_an_error_naming_the_variable(text):
    with pytest.raises(ValueError, match="FTO_S3_POLICY"):
        s3access.parse(text)


def test_no_policy_means_no_identity_anywhere_and_no_bucket_limits():
    policy = s3access.parse("")
    assert s3access.identity_refusal(policy, "team-a") is not None
    assert s3access.location_refusal(policy, "team-a", "any", "key") is None
    assert s3access.location_refusal(policy, "team-a", "any", "a/../b") is not None


class Recorder:
    def __init__(self):
        self.calls = []

    def get_object(self, **kw):
        self.calls.append(("get", kw))
        return {}

    def delete_objects(self, **kw):
        self.calls.append(("delete", kw))
        return {}

    def get_paginator(self, name):
        outer = self

        class P:
            def paginate(self, **kw):
                outer.calls.append(("list", kw))
                return []
        return P()


def test_the_guarded_client_refuses_before_calling_s3():
    inner = Recorder()
    s3 = s3access.GuardedS3(inner, POLICY, "team-b")
    s3.get_object(Bucket="shared", Key="team-b/out/manifest.json")
    for call in (lambda: s3.get_object(Bucket="shared", Key="team-a/out/manifest.json"),
                 lambda: s3.get_paginator("list_objects_v2").paginate(Bucket="shared", Prefix="team-a/"),
                 lambda: s3.delete_objects(Bucket="shared", Delete={"Objects": [{"Key": "team-b/x"},
                                                                               {"Key": "team-a/y"}]})):
        with pytest.raises(storage.StorageError) as err:
            call()
        assert err.value.reason == "S3LocationForbidden"
    assert [c[0] for c in inner.calls] == ["get"]
    with pytest.raises(AttributeError):
        s3.put_object(Bucket="shared", Key="team-b/x", Body=b"")


def test_client_for_refuses_a_job_without_credentials_where_no_identity_is_configured(monkeypatch):
    monkeypatch.setenv("FTO_S3_POLICY", json.dumps({"namespaces": {"team-a": {"prefixes": ["s3://shared/team-a/"],
                                                                              "operatorIdentity": True}}}))
    with pytest.raises(storage.StorageError) as err:
        storage.client_for(None, "team-b", None)
    assert err.value.reason == "CredentialsRequired"
    assert isinstance(storage.client_for(None, "team-a", None), s3access.GuardedS3)


class NodesCore(FakeCore):
    def list_node(self, **_):
        class Resp:
            data = b'{"items": []}'
        return Resp()


@pytest.mark.parametrize("spec, secret, problem", [
    ({}, None, "CredentialsRequired"),
    ({"credentials": {"secretRef": {"name": "s3"}}}, {"metadata": {"name": "s3"}, "data": {}}, "SecretNotOptedIn"),
    ({"credentials": {"secretRef": {"name": "s3"}}},
     {"metadata": {"labels": LABEL}, "data": {"AWS_ACCESS_KEY_ID": "aWQ=", "AWS_SECRET_ACCESS_KEY": "aWQ="}}, None),
])
def test_a_job_fails_preflight_without_credentials_or_with_an_unlabelled_secret(monkeypatch, spec, secret, problem):
    from finetune_operator.finetunejob import observe
    monkeypatch.delenv("FTO_S3_POLICY", raising=False)
    p = observe._preflight(NodesCore(secret), "team-b", spec)
    assert (p.credentials_problem[0] if p.credentials_problem else None) == problem
