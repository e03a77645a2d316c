"""Issue 13, findings 3 and 10, reproduced as tenant identities against the chart's policies and the
operator under the chart's ServiceAccount.

3. Confused deputy on S3: team B points output.uri at team A's prefix with cleanupOnDelete All and
   no credentials. Admission refuses it (per-namespace prefixes, credentials required); created
   past admission by an admin, the operator still neither deletes with its own identity nor
   outside team B's prefixes, and team A's objects survive.
10. Secrets: a user who may not `get` a Secret cannot name it (spec.credentials, adminTokenSecretRef)
   on create or by changing the reference; and the operator never reads an unlabelled Secret,
   saying why in a condition without ever showing its value.
"""
from __future__ import annotations

import base64
import contextlib
import json
import uuid

import pytest
import yaml
from kubernetes import client, config

from chart_helpers import CHART, helm
from devcluster import components
from helpers import BASE_MODEL_URI, kubectl, wait_for
from tenancy import GROUP, VERSION, apply, as_user, install_tenancy, job, operator_under_sa, stop_operator, version

FINALIZER = "finetune.fto.dev/s3-cleanup"
LABEL = "fto-test-admission"
SECRET_VALUE = f"platform-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3):
    """The release, then team A and team B bound to their own prefixes of the shared bucket."""
    gen = install_tenancy(cluster, core, s3)
    t = next(gen)
    try:
        shared, models = t.bucket, BASE_MODEL_URI.split("/")[2]
        common = [f"s3://{shared}/data/", f"s3://{models}/"]
        values = {"s3AllowList": {"namespaces": {t.team_a: {"prefixes": [*common, f"s3://{shared}/out/"]},
                                                 t.team_b: {"prefixes": [*common, f"s3://{shared}/team-b/"]}}}}
        upgraded = helm(cluster, "upgrade", t.release, str(CHART), "--namespace", t.system, "--reuse-values",
                        "-f", "-", input_=yaml.safe_dump(values))
        assert upgraded.returncode == 0, upgraded.stderr
        probe = job(cluster, "probe", shared, output__uri=f"s3://{shared}/out/probe/")
        wait_for(lambda: "outside the prefixes" in as_user(cluster, None, [], "apply", "--dry-run=server", "-n", t.team_b,
                                                            "-f", "-", stdin=json.dumps(probe)).stderr,
                 what="the per-namespace prefixes to be active")
        kubectl(cluster, "create", "rolebinding", "finetune-only", "-n", t.team_b, f"--clusterrole={t.sa}-edit",
                f"--group=finetune-only-{t.tag}")
        core.create_namespaced_secret(t.team_b, client.V1Secret(  # not opted in, not readable by finetune-only
            metadata=client.V1ObjectMeta(name="platform-token"), string_data={"token": SECRET_VALUE}))
        yield t
    finally:
        gen.close()


@pytest.fixture(scope="module")
def operator(cluster, core, tenancy, tmp_path_factory):
    """The operator under the chart SA, with an identity of its own that could reach every bucket
    (MinIO's root keys in its environment), and the S3 mapping the chart rendered for it."""
    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    deploy = apps.read_namespaced_deployment(tenancy.sa, tenancy.system)
    env = {e.name: e.value for e in deploy.spec.template.spec.containers[0].env or []}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD,
                            "AWS_ENDPOINT_URL": cluster.s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                            "FTO_S3_POLICY": env.get("FTO_S3_POLICY", "")}.items():
            mp.setenv(name, value)
        _, log, proc = operator_under_sa(cluster, core, tenancy, tmp_path_factory.mktemp("operator"),
                                         namespaces=[tenancy.team_b, tenancy.system])
    yield log, proc
    for name in _custom(cluster).list_namespaced_custom_object(GROUP, VERSION, tenancy.team_b, "finetunejobs")["items"]:
        _drop_finalizer(cluster, tenancy.team_b, name["metadata"]["name"])
    stop_operator(cluster, proc, [tenancy.team_b])


def _custom(cluster):
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def _drop_finalizer(cluster, ns: str, name: str) -> None:
    with contextlib.suppress(client.exceptions.ApiException):
        _custom(cluster).patch_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name,
                                                        {"metadata": {"finalizers": None}})


@contextlib.contextmanager
def admission_off(cluster, core, ns: str, release: str):
    """An admin takes the namespace out of the policies' namespaceSelector for a moment."""
    refused = json.dumps(job(cluster, "bypass-probe", "not-allowed-bucket"))

    def admitted() -> bool:
        return as_user(cluster, None, [], "apply", "--dry-run=server", "-n", ns, "-f", "-", stdin=refused).returncode == 0
    core.patch_namespace(ns, {"metadata": {"labels": {LABEL: "off"}}})
    try:
        wait_for(admitted, what="admission to be off in " + ns)
        yield
    finally:
        core.patch_namespace(ns, {"metadata": {"labels": {LABEL: release}}})
        wait_for(lambda: not admitted(), what="admission to be back in " + ns)


def _events(core, ns: str, name: str) -> list:
    return core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items


def _no_credentials(body: dict) -> dict:
    del body["spec"]["credentials"]
    return body


# --- finding 3 ---------------------------------------------------------------------------------------------

def test_a_tenant_cannot_name_another_teams_prefix_or_leave_out_credentials(cluster, tenancy):
    t, bea = tenancy, ("bea", [f"team-b-{tenancy.tag}"])
    steal = job(cluster, "steal", t.bucket, output__uri=f"s3://{t.bucket}/out/victim/", lifecycle__cleanupOnDelete="All")
    refused = apply(cluster, t.team_b, steal, *bea)
    assert refused.returncode != 0
    assert f"S3 URI s3://{t.bucket}/out/victim/ is outside the prefixes namespace {t.team_b} may use" in refused.stderr
    sneaky = job(cluster, "sneaky", t.bucket, output__uri=f"s3://{t.bucket}/team-b/../out/victim/")
    dotted = apply(cluster, t.team_b, sneaky, *bea)  # the CRD refuses it too; the policy is the second line
    assert dotted.returncode != 0 and "path segment" in dotted.stderr
    own = job(cluster, "own", t.bucket, output__uri=f"s3://{t.bucket}/team-b/own/", lifecycle__cleanupOnDelete="All")
    bare = apply(cluster, t.team_b, _no_credentials(json.loads(json.dumps(own))), *bea)
    assert bare.returncode != 0 and f"spec.credentials is required in namespace {t.team_b}" in bare.stderr
    admitted = as_user(cluster, *bea, "apply", "--dry-run=server", "-n", t.team_b, "-f", "-", stdin=json.dumps(own))
    assert admitted.returncode == 0, admitted.stderr


def test_past_admission_the_operator_neither_uses_its_own_identity_nor_leaves_the_namespaces_prefixes(
        cluster, core, s3, tenancy, operator):
    t, custom = tenancy, _custom(cluster)
    victims = [f"out/victim/checkpoints/step-{i}/weights.bin" for i in range(3)] + ["out/victim/manifest.json"]
    for key in victims:
        s3.put_object(Bucket=t.bucket, Key=key, Body=b"team A's work")
    victim_uri = f"s3://{t.bucket}/out/victim/"
    deputy = _no_credentials(job(cluster, "deputy", t.bucket, output__uri=victim_uri, lifecycle__cleanupOnDelete="All",
                                 lifecycle__cancel=True))
    outside = job(cluster, "outside", t.bucket, output__uri=victim_uri, lifecycle__cleanupOnDelete="All",
                  lifecycle__cancel=True)
    runs = _no_credentials(job(cluster, "runs-bare", t.bucket, output__uri=f"s3://{t.bucket}/team-b/runs-bare/"))
    with admission_off(cluster, core, t.team_b, t.release):
        for body in (deputy, outside, runs):
            custom.create_namespaced_custom_object(GROUP, VERSION, t.team_b, "finetunejobs", body)
    log, proc = operator

    def finalized():
        assert proc.poll() is None, f"the operator exited ({proc.returncode})"
        return all(FINALIZER in (custom.get_namespaced_custom_object(GROUP, VERSION, t.team_b, "finetunejobs", n)
                                 ["metadata"].get("finalizers") or []) for n in ("deputy", "outside"))
    wait_for(finalized, timeout=120, interval=1, what="the clean-up finalizers")
    for name in ("deputy", "outside"):
        custom.delete_namespaced_custom_object(GROUP, VERSION, t.team_b, "finetunejobs", name)

    def cleanup_refused(name: str, words: str):
        return [e for e in _events(core, t.team_b, name) if e.reason == "CleanupFailed" and words in e.message]

    def gone(name: str) -> bool:
        return not [j for j in custom.list_namespaced_custom_object(GROUP, VERSION, t.team_b, "finetunejobs")["items"]
                    if j["metadata"]["name"] == name]
    refusals = {"deputy": "spec.credentials is required", "outside": f"outside the S3 prefixes namespace {t.team_b} may use"}
    for name, words in refusals.items():  # refused, or (before the fix) cleaned up and gone
        wait_for(lambda n=name, w=words: cleanup_refused(n, w) or gone(n), timeout=120, interval=1, what=f"{name}'s clean-up")
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=t.bucket, Prefix="out/victim/").get("Contents", [])}
    assert left == set(victims), f"team A's objects were deleted: {sorted(set(victims) - left)}"
    assert all(cleanup_refused(name, words) for name, words in refusals.items())

    def failed_without_credentials():
        st = custom.get_namespaced_custom_object(GROUP, VERSION, t.team_b, "finetunejobs", "runs-bare").get("status") or {}
        return st if st.get("phase") == "Failed" else None
    status = wait_for(failed_without_credentials, timeout=120, interval=1, what="the bare job to fail")
    assert status["reason"] == "CredentialsRequired" and "spec.credentials is required" in status["message"]
    assert not core.list_namespaced_pod(t.team_b, label_selector="finetune.fto.dev/job=runs-bare").items


# --- finding 10 --------------------------------------------------------------------------------------------

def test_a_user_who_may_not_read_a_secret_cannot_name_it(cluster, tenancy):
    t, mal, bea = tenancy, ("mal", [f"finetune-only-{tenancy.tag}"]), ("bea", [f"team-b-{tenancy.tag}"])
    assert as_user(cluster, *mal, "auth", "can-i", "get", "secret/platform-token", "-n", t.team_b).stdout.strip() == "no"
    assert as_user(cluster, *mal, "auth", "can-i", "create", "finetunejobs.finetune.fto.dev", "-n", t.team_b
                   ).stdout.strip() == "yes"
    output = f"s3://{t.bucket}/team-b/mal/"
    grab = job(cluster, "grab", t.bucket, output__uri=output,
               credentials__secretRef={"name": "platform-token", "accessKeyIdKey": "token",
                                       "secretAccessKeyKey": "token", "sessionTokenKey": "token"})
    refused = apply(cluster, t.team_b, grab, *mal)
    assert refused.returncode != 0
    assert f"mal may not get Secret platform-token in namespace {t.team_b}" in refused.stderr
    mv = version("grab-v1", "candidate")
    mv["spec"]["servingTarget"]["adminTokenSecretRef"] = {"name": "platform-token", "key": "token"}
    assert "may not get Secret" in apply(cluster, t.team_b, mv, *mal).stderr
    # Someone who may read the Secret creates a job; changing its reference needs the same right.
    mine = job(cluster, "mine", t.bucket, output__uri=f"s3://{t.bucket}/team-b/mine/", lifecycle__suspend=True)
    assert apply(cluster, t.team_b, mine, *bea).returncode == 0
    swap = as_user(cluster, *mal, "patch", "finetunejob", "mine", "-n", t.team_b, "--type=merge", "-p",
                   json.dumps({"spec": {"credentials": {"secretRef": {"name": "platform-token"}}}}))
    assert swap.returncode != 0 and "mal may not get Secret platform-token" in swap.stderr
    redirect = as_user(cluster, *mal, "patch", "finetunejob", "mine", "-n", t.team_b, "--type=merge", "-p",
                       json.dumps({"spec": {"credentials": {"secretRef": {"sessionTokenKey": "AWS_SECRET_ACCESS_KEY"}}}}))
    assert redirect.returncode != 0 and "mal may not get Secret s3-credentials" in redirect.stderr
    relabel = as_user(cluster, *mal, "label", "finetunejob", "mine", "-n", t.team_b, "owner=mal")
    assert relabel.returncode == 0, relabel.stderr  # the reference unchanged: nothing to check
    # The token goes to the pods the serving target selects: pointing it at one's own pods is
    # naming the Secret anew.
    served = version("served-v1", "candidate")
    served["spec"]["servingTarget"]["adminTokenSecretRef"] = {"name": "platform-token", "key": "token"}
    assert apply(cluster, t.team_b, served, *bea).returncode == 0
    retarget = as_user(cluster, *mal, "patch", "modelversion", "served-v1", "-n", t.team_b, "--type=merge", "-p",
                       json.dumps({"spec": {"servingTarget": {"selector": {"matchLabels": {"app": "mals-pods"}}}}}))
    assert retarget.returncode != 0 and "mal may not get Secret platform-token" in retarget.stderr


def test_the_operator_never_reads_an_unlabelled_secret_and_never_shows_its_value(cluster, core, tenancy, operator):
    t, custom = tenancy, _custom(cluster)
    log, proc = operator
    body = job(cluster, "unlabelled", t.bucket, output__uri=f"s3://{t.bucket}/team-b/unlabelled/",
               credentials__secretRef={"name": "platform-token", "accessKeyIdKey": "token",
                                       "secretAccessKeyKey": "token", "sessionTokenKey": "token"})
    created = as_user(cluster, None, [], "apply", "-n", t.team_b, "-f", "-", stdin=json.dumps(body))  # the admin may read it
    assert created.returncode == 0, created.stderr

    def pods():
        return core.list_namespaced_pod(t.team_b, label_selector="finetune.fto.dev/job=unlabelled").items

    def failed_or_pod():  # (before the fix: a validate pod with the Secret's value in its environment)
        assert proc.poll() is None, f"the operator exited ({proc.returncode})"
        st = custom.get_namespaced_custom_object(GROUP, VERSION, t.team_b, "finetunejobs", "unlabelled").get("status") or {}
        return st if st.get("phase") == "Failed" or pods() else None
    status = wait_for(failed_or_pod, timeout=180, interval=1, what="the job naming an unlabelled Secret to fail")
    assert not pods(), "a pod was given the unlabelled Secret"
    assert status["reason"] == "SecretNotOptedIn"
    assert "Secret 'platform-token' is not labelled finetune.fto.dev/credentials" in status["message"]
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    seen = json.dumps(status) + json.dumps([e.message for e in _events(core, t.team_b, "unlabelled")]) + log.read_text()
    assert SECRET_VALUE not in seen and encoded not in seen
