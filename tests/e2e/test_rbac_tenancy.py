"""RBAC, tenant isolation and the admission policies of the chart, against the real apiserver.

One release of the chart per module. Its admission policies apply only to the two tenant
namespaces it labels, so other tests are untouched. Users are impersonated (kubectl --as) or
minted client certificates (user_api); the operator runs under the chart's ServiceAccount token.
"""
from __future__ import annotations

import importlib.util
import json

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from helpers import wait_for
from tenancy import (GROUP, PROMOTERS, VERSION, apply, as_user, install_tenancy, job, operator_under_sa, stop_operator,
                     version)


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3):
    yield from install_tenancy(cluster, core, s3)


@pytest.fixture
def operator_as_sa(cluster, core, tenancy, tmp_path, base_model_uri):
    kubeconfig, log, proc = operator_under_sa(cluster, core, tenancy, tmp_path)
    yield kubeconfig, log, proc
    stop_operator(cluster, proc, [tenancy.team_a, tenancy.system])


# --- tenant isolation --------------------------------------------------------------------------

def test_a_team_member_creates_jobs_in_their_namespace_and_not_in_another(cluster, tenancy, user_api):
    alice = client.CustomObjectsApi(user_api(f"alice-{tenancy.tag}", (f"team-a-{tenancy.tag}",)))
    alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", job(cluster, "mine", tenancy.bucket))
    with pytest.raises(ApiException) as refused:
        alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_b, "finetunejobs", job(cluster, "theirs", tenancy.bucket))
    assert refused.value.status == 403
    with pytest.raises(ApiException) as listing:
        alice.list_namespaced_custom_object(GROUP, VERSION, tenancy.team_b, "finetunejobs")
    assert listing.value.status == 403


def test_viewers_read_jobs_but_cannot_create_them(cluster, tenancy):
    viewer = [f"viewers-{tenancy.tag}"]
    assert as_user(cluster, "val", viewer, "get", "finetunejobs,modelversions", "-n", tenancy.team_a).returncode == 0
    refused = apply(cluster, tenancy.team_a, job(cluster, "by-viewer", tenancy.bucket), "val", viewer)
    assert refused.returncode != 0 and "forbidden" in refused.stderr


def test_a_job_cannot_name_a_secret_in_another_namespace(cluster, tenancy, user_api):
    alice = client.CustomObjectsApi(user_api(f"alice-{tenancy.tag}", (f"team-a-{tenancy.tag}",)))
    body = job(cluster, "steal", tenancy.bucket)
    body["spec"]["credentials"]["secretRef"]["namespace"] = tenancy.team_b
    with pytest.raises(ApiException) as strict:
        alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", body,
                                              field_validation="Strict")
    assert strict.value.status == 400 and 'unknown field \\"spec.credentials.secretRef.namespace' in strict.value.body
    # Without strict validation the field is dropped: the job can only ever mean its own namespace.
    created = alice.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", body)
    assert created["spec"]["credentials"]["secretRef"] == {"name": "s3-credentials", "accessKeyIdKey": "AWS_ACCESS_KEY_ID",
                                                           "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY"}
    secrets = client.CoreV1Api(user_api(f"alice-{tenancy.tag}", (f"team-a-{tenancy.tag}",)))
    with pytest.raises(ApiException) as read:
        secrets.read_namespaced_secret("s3-credentials", tenancy.team_b)
    assert read.value.status == 403


# --- promotion needs a group ---------------------------------------------------------------------

def test_only_the_promoters_group_sets_stage_production(cluster, tenancy):
    editor, promoter = [f"team-a-{tenancy.tag}"], [f"team-a-{tenancy.tag}", PROMOTERS]
    ns = tenancy.team_a
    refused = apply(cluster, ns, version("bot-v1", "production"), "bob", editor)
    assert refused.returncode != 0
    assert f"setting stage: production needs membership of group {PROMOTERS}; bob is not a member" in refused.stderr
    assert apply(cluster, ns, version("bot-v1", "candidate"), "bob", editor).returncode == 0
    promote = as_user(cluster, "bob", editor, "patch", "modelversion", "bot-v1", "-n", ns, "--type=merge",
                      "-p", '{"spec":{"stage":"production"}}')
    assert promote.returncode != 0 and "needs membership" in promote.stderr
    promoted = as_user(cluster, "carol", promoter, "patch", "modelversion", "bot-v1", "-n", ns, "--type=merge",
                       "-p", '{"spec":{"stage":"production"}}')
    assert promoted.returncode == 0, promoted.stderr
    # An editor may still label or archive what is already in production.
    assert as_user(cluster, "bob", editor, "label", "modelversion", "bot-v1", "-n", ns, "owner=bob").returncode == 0
    assert apply(cluster, ns, version("bot-v1", "archived"), "bob", editor).returncode == 0


def test_a_job_cannot_register_straight_into_production_without_the_group(cluster, tenancy):
    editor = [f"team-a-{tenancy.tag}"]
    body = job(cluster, "to-prod", tenancy.bucket,
               output__registerModelVersion={"model": "support-bot", "version": "v9", "stage": "production",
                                             "servingTarget": {"selector": {"matchLabels": {"app": "bot"}}}})
    refused = apply(cluster, tenancy.team_a, body, "bob", editor)
    assert refused.returncode != 0 and "needs membership" in refused.stderr
    body["metadata"]["name"] = "to-prod-ok"
    assert apply(cluster, tenancy.team_a, body, "carol", editor + [PROMOTERS]).returncode == 0


# --- S3 allow-list and metadata endpoints -------------------------------------------------------

def test_buckets_off_the_allow_list_are_refused_naming_the_bucket(cluster, tenancy):
    editor_a, editor_b = [f"team-a-{tenancy.tag}"], [f"team-b-{tenancy.tag}"]
    refused = apply(cluster, tenancy.team_a, job(cluster, "elsewhere", "someone-elses-bucket"), "bob", editor_a)
    assert refused.returncode != 0
    assert f"S3 bucket someone-elses-bucket is not on the allow-list for namespace {tenancy.team_a}" in refused.stderr
    # team-a's own extra bucket: allowed in team-a only.
    own = job(cluster, "own-bucket", tenancy.bucket, output__uri=f"s3://{tenancy.a_bucket}/out/")
    assert apply(cluster, tenancy.team_a, own, "bob", editor_a).returncode == 0
    other = apply(cluster, tenancy.team_b, own, "dan", editor_b)
    assert other.returncode != 0 and f"S3 bucket {tenancy.a_bucket} is not on the allow-list" in other.stderr


def test_endpoints_off_the_allow_list_and_metadata_addresses_are_refused(cluster, tenancy):
    editor = [f"team-a-{tenancy.tag}"]
    off_list = apply(cluster, tenancy.team_a, job(cluster, "ep", tenancy.bucket, credentials__endpoint="https://s3.example.com"),
                     "bob", editor)
    assert off_list.returncode != 0 and "S3 endpoint https://s3.example.com is not on the allow-list" in off_list.stderr
    for endpoint in ("http://169.254.169.254", "http://[fd00:ec2::254]", "http://metadata.google.internal",
                     "http://100.100.100.200:80", "http://169.254.10.10:9000", "http://2852039166"):  # refused at admission, never dialled
        refused = apply(cluster, tenancy.team_a, job(cluster, "md", tenancy.bucket, credentials__endpoint=endpoint),
                        "bob", editor)
        assert refused.returncode != 0, endpoint
    # Allow-listed for team-a by mistake, and still refused.
    listed = apply(cluster, tenancy.team_a, job(cluster, "md", tenancy.bucket, credentials__endpoint="http://169.254.169.254"),  # refused, never dialled
                   "bob", editor)
    assert "endpoint http://169.254.169.254 points at a cloud metadata service" in listed.stderr


def test_tenants_cannot_edit_the_allow_list(cluster, tenancy):
    patch = as_user(cluster, "bob", [f"team-a-{tenancy.tag}"], "patch", "validatingadmissionpolicy",
                    f"{tenancy.release}-finetune-operator-s3-allowlist", "--type=json",
                    "-p", '[{"op":"remove","path":"/spec/validations/0"}]')
    assert patch.returncode != 0 and "forbidden" in patch.stderr


# --- the operator under the chart's ServiceAccount -------------------------------------------

def test_the_operator_under_its_service_account_validates_a_job_and_is_refused_outside_its_role(
        cluster, tenancy, operator_as_sa):
    kubeconfig, log, proc = operator_as_sa
    admin = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    admin.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", job(cluster, "under-sa", tenancy.bucket))

    def validated():
        assert proc.poll() is None, f"the operator exited ({proc.returncode})"
        status = admin.get_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", "under-sa").get("status") or {}
        assert status.get("phase") != "Failed", status
        return any(c["type"] == "Validated" and c["status"] == "True" for c in status.get("conditions", []))
    try:
        wait_for(validated, timeout=240, interval=1, what="validation under the SA")
    except AssertionError as err:
        raise AssertionError(f"{err}\noperator log:\n{log.read_text()[-3000:]}") from None
    admin.patch_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", "under-sa",
                                         {"spec": {"lifecycle": {"cancel": True}}})
    wait_for(lambda: (admin.get_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", "under-sa")
                      .get("status") or {}).get("phase") == "Cancelled", timeout=120, what="cancel under the SA")
    assert "Forbidden" not in log.read_text() and "403" not in log.read_text(), log.read_text()[-2000:]

    sa = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(sa)
    assert core.read_namespaced_secret("s3-credentials", tenancy.team_a).data  # get: the trainer's credentials
    for refused in (lambda: core.list_secret_for_all_namespaces(),
                    lambda: core.list_namespaced_secret(tenancy.team_a),
                    lambda: core.delete_node("fto-process-node"),
                    lambda: client.RbacAuthorizationV1Api(sa).create_cluster_role(
                        client.V1ClusterRole(metadata=client.V1ObjectMeta(name=f"escalate-{tenancy.tag}"))),
                    lambda: client.AppsV1Api(sa).list_namespaced_deployment(tenancy.team_a)):
        with pytest.raises(ApiException) as err:
            refused()
        assert err.value.status == 403


MV_CONTROLLER = importlib.util.find_spec("finetune_operator.modelversion") is not None


@pytest.mark.skipif(not MV_CONTROLLER, reason="the ModelVersion controller (operator/finetune_operator/modelversion/) "
                                              "is not importable")
def test_finetunejob_to_modelversion_to_promote_under_the_chart_service_account(cluster, tenancy, operator_as_sa):
    """Train, register and promote onto the chart's inference example (in the release namespace),
    the operator holding only the chart's RBAC. Who may ask for production is tested above."""
    _, log, proc = operator_as_sa
    ns, admin = tenancy.system, client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    body = job(cluster, "flow", tenancy.bucket, output__registerModelVersion={
                   "model": "support-bot", "version": "v1", "stage": "production",
                   "servingTarget": {"selector": {"matchLabels": {"app": "finetune-inference"}},
                                     "adminTokenSecretRef": {"name": "finetune-inference-agent-token"}}})
    created = as_user(cluster, None, [], "apply", "-n", ns, "-f", "-", stdin=json.dumps(body))
    assert created.returncode == 0, created.stderr

    def version_phase():
        assert proc.poll() is None, f"the operator exited ({proc.returncode})"
        job_status = admin.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", "flow").get("status") or {}
        assert job_status.get("phase") not in ("Failed", "Cancelled"), job_status
        try:
            mv = admin.get_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", "support-bot-v1")
        except ApiException:
            return None
        status = mv.get("status") or {}
        assert status.get("phase") not in ("Failed", "RolledBack"), status
        return mv if status.get("phase") == "Production" else None
    try:
        mv = wait_for(version_phase, timeout=540, interval=2, what="support-bot-v1 in Production")
    except AssertionError as err:
        raise AssertionError(f"{err}\noperator log:\n{log.read_text()[-4000:]}") from None
    assert mv["status"]["servedName"].startswith("support-bot--v1-")
    assert "Forbidden" not in log.read_text(), log.read_text()[-3000:]
