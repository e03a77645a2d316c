"""Issue 13, findings 1 and 9: a tenant (the built-in `edit` role, not in the promoters group) cannot
get past the promotion gate, neither through the model's production record nor by editing what a
promoter approved.

One chart release with two tenant namespaces (tenancy.py). In team-a, the reference engine + adapter
agent (one pod on the process node) is the serving target and the operator runs under the chart's
ServiceAccount (`operator_under_sa`), so the record lives where the chart's RBAC puts it.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devcluster import components
from helpers import wait_for
from inference_adapters import publish
from tenancy import GROUP, PROMOTERS, VERSION, apply, as_user, install_tenancy, job, operator_under_sa, stop_operator

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-promotion-gate-token"
APP = "gate-serving"
MODEL = "support-bot"


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3):
    # The chart's own inference example is not needed here: the serving target is in team-a.
    yield from install_tenancy(cluster, core, s3, {"inferenceExample": {"enabled": False}})


def _deployment() -> tuple[dict, dict]:
    from finetune_trainer.basemodel import models_cache
    docs = list(yaml.safe_load_all((ROOT / "examples" / "inference-deployment-reference.yaml").read_text()))
    secret = copy.deepcopy(next(d for d in docs if d["kind"] == "Secret"))
    secret["stringData"]["token"] = TOKEN
    dep = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    dep["metadata"]["name"] = APP
    dep["spec"]["selector"]["matchLabels"] = {"app": APP}
    dep["spec"]["template"]["metadata"]["labels"] = {"app": APP}
    for c in dep["spec"]["template"]["spec"]["containers"]:
        if c["name"] == "engine":
            c["env"].append({"name": "FTO_CACHE_DIR", "value": str(models_cache().parent)})
        else:
            c["envFrom"] = [{"secretRef": {"name": "engine-s3"}}]
    return secret, dep


@pytest.fixture(scope="module")
def serving(cluster, api, core, s3, tenancy, tmp_path_factory):
    """The serving pod in team-a, one real adapter in the allowed bucket, and the operator under the SA."""
    from finetune_trainer.basemodel import prepare_default_model
    from finetune_trainer.model import folder_digest

    ns = tenancy.team_a
    secret, dep = _deployment()
    core.create_namespaced_secret(ns, secret)
    core.create_namespaced_secret(ns, {"metadata": {"name": "engine-s3"}, "stringData": {
        "AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD,
        "AWS_ENDPOINT_URL": cluster.s3_endpoint}})
    client.AppsV1Api(api).create_namespaced_deployment(ns, dep)
    base = prepare_default_model()
    adapter = publish(s3, base, f"s3://{tenancy.bucket}/adapters/gate", rank=4, seed=7,
                      base_digest=folder_digest(base))
    wait_for(lambda: len(_ready_ips(core, ns)) == 1, timeout=300, interval=1, what="the serving pod Ready")
    folder = tmp_path_factory.mktemp("promotion-gate")
    _, log, proc = operator_under_sa(cluster, core, tenancy, folder, namespaces=[ns, tenancy.system])
    yield {"adapter": adapter, "log": log, "proc": proc}
    stop_operator(cluster, proc, [ns])
    print(f"\noperator log: {log}")


# --- helpers -----------------------------------------------------------------------------------------------------
def _ready_ips(core, ns: str) -> list:
    pods = core.list_namespaced_pod(ns, label_selector=f"app={APP}").items
    return [p.status.pod_ip for p in pods if p.status.pod_ip and not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def _aliases(core, ns: str) -> list:
    """Each serving pod's alias of the model, as {served name: weight}."""
    out = []
    for ip in _ready_ips(core, ns):
        state = requests.get(f"http://{ip}:8001/admin/state", headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=10).json()
        out.append({a["name"]: a["weight"] for a in state["aliases"].get(MODEL, [])})
    return out


def _version(cluster, tenancy, serving, key: str, stage: str, **spec) -> dict:
    a = serving["adapter"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": f"{MODEL}-{key}"},
            "spec": {"model": MODEL, "version": key, "stage": stage,
                     "adapter": {"uri": a["adapterUri"] + "/", "digest": a["manifestDigest"]},
                     "baseModel": {"name": "smollm2-135m-instruct"},
                     "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
                     "servingTarget": {"selector": {"matchLabels": {"app": APP}}, "port": 8001,
                                       "adminTokenSecretRef": {"name": "adapter-agent-token"}}, **spec}}


def _status(admin, ns: str, name: str) -> dict:
    return admin.get_namespaced_custom_object(GROUP, VERSION, ns, "modelversions", name).get("status") or {}


def _wait_phase(admin, serving, ns: str, name: str, phase: str, reason: str | None = None, timeout: float = 240):
    def check():
        assert serving["proc"].poll() is None, f"the operator exited ({serving['proc'].returncode})"
        s = _status(admin, ns, name)
        return s if s.get("phase") == phase and (reason is None or s.get("reason") == reason) else None
    try:
        return wait_for(check, timeout=timeout, interval=0.5, what=f"{name} phase {phase} {reason or ''}")
    except AssertionError as err:
        raise AssertionError(f"{err}\nstatus: {json.dumps(_status(admin, ns, name))[:3000]}\n"
                             f"operator log:\n{serving['log'].read_text()[-3000:]}") from None


def _forged(record: dict, name: str, version: str, served: str) -> dict:
    """The record's data saying `name` is production, decided and won at generation 1."""
    data = dict(record or {})
    data.update(production=name, productionVersion=version, servedName=served, promotedAt="2026-01-01T00:00:00Z",
                previous="", previousVersion="", previousServedName="", promoting="{}",
                decisions=json.dumps({name: {"generation": 1, "result": "won", "at": "2026-01-01T00:00:00Z"}}),
                history="[]")
    return data


# --- finding 1: the production record --------------------------------------------------------------------------
def test_a_tenant_cannot_reach_the_record_and_a_stand_in_by_the_old_name_serves_nothing(
        cluster, tenancy, serving, user_api):
    ns, tag = tenancy.team_a, tenancy.tag
    editor, promoter = [f"team-a-{tag}"], [f"team-a-{tag}", PROMOTERS]
    admin = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    core_admin = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    approved = apply(cluster, ns, _version(cluster, tenancy, serving, "v1", "production"), "carol", promoter)
    assert approved.returncode == 0, approved.stderr
    candidate = apply(cluster, ns, _version(cluster, tenancy, serving, "v2", "candidate"), "bob", editor)
    assert candidate.returncode == 0, candidate.stderr
    v1 = _wait_phase(admin, serving, ns, f"{MODEL}-v1", "Production")
    v2 = _wait_phase(admin, serving, ns, f"{MODEL}-v2", "Registered", "Candidate")
    assert _aliases(core_admin, ns) == [{v1["servedName"]: 100}]

    # The attack as the tenant: the record by its old name in team-a, pointed at the candidate.
    bob = client.CoreV1Api(user_api(f"bob-{tag}", (f"team-a-{tag}",)))
    old_name = f"fto-model-{MODEL}"
    try:
        old = bob.read_namespaced_config_map(old_name, ns)
        bob.patch_namespaced_config_map(old_name, ns, {"data": _forged(old.data, f"{MODEL}-v2", "v2", v2["servedName"])})
    except ApiException as err:
        assert err.status == 404, err
        bob.create_namespaced_config_map(ns, {"metadata": {"name": old_name}, "data": _forged(
            {}, f"{MODEL}-v2", "v2", v2["servedName"])})
    # Passes after the forgery: a spec change the tenant may make on its candidate, until observed.
    bumped = as_user(cluster, f"bob-{tag}", editor, "patch", "modelversion", f"{MODEL}-v2", "-n", ns, "--type=merge",
                     "-p", json.dumps({"spec": {"gates": {"metrics": [{"metric": "eval_loss", "max": 1000}]}}}))
    assert bumped.returncode == 0, bumped.stderr
    wait_for(lambda: _status(admin, ns, f"{MODEL}-v2").get("observedGeneration") == 2, timeout=60,
             what="a pass of the candidate after the forgery")
    deadline = time.monotonic() + 20  # ten production converge periods
    while time.monotonic() < deadline:
        s2 = _status(admin, ns, f"{MODEL}-v2")
        assert s2.get("phase") != "Production", f"the forged record promoted the candidate: {s2}"
        assert all(v2["servedName"] not in alias for alias in _aliases(core_admin, ns)), "the candidate is served"
        time.sleep(1)
    assert _status(admin, ns, f"{MODEL}-v1").get("phase") == "Production"
    assert _aliases(core_admin, ns) == [{v1["servedName"]: 100}]

    # The real record is in the operator's namespace, out of the tenant's reach.
    where = _status(admin, ns, f"{MODEL}-v1")["productionRecord"]
    record_ns, record_name = where.split("/", 1) if "/" in where else (ns, where)
    assert record_ns == tenancy.system
    real = core_admin.read_namespaced_config_map(record_name, record_ns)
    assert real.data["production"] == f"{MODEL}-v1"
    for attempt in (lambda: bob.read_namespaced_config_map(record_name, record_ns),
                    lambda: bob.patch_namespaced_config_map(record_name, record_ns, {"data": _forged(
                        real.data, f"{MODEL}-v2", "v2", v2["servedName"])})):
        with pytest.raises(ApiException) as refused:
            attempt()
        assert refused.value.status == 403
    assert "Forbidden" not in serving["log"].read_text(), serving["log"].read_text()[-3000:]


# --- finding 9: editing what a promoter approved -----------------------------------------------------------------
def test_a_non_promoter_cannot_change_an_approved_job_or_strip_rollback_but_may_label_and_archive(cluster, tenancy):
    # team-b: the same admission policies, and no operator watching (nothing trains).
    ns, tag = tenancy.team_b, tenancy.tag
    editor, promoter = [f"team-b-{tag}"], [f"team-b-{tag}", PROMOTERS]
    probe = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": "probe"},
             "spec": {"model": MODEL, "version": "probe", "stage": "production", "adapter": {"fromJob": {"name": "x"}},
                      # Valid for every other policy, so the only refusal can be the promotion policy's
                      # (the apiserver reports whichever denying policy it evaluates first).
                      "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
                      "servingTarget": {"selector": {"matchLabels": {"app": APP}}}}}
    # The apiserver loads a new policy a moment after the install: wait until it refuses.
    wait_for(lambda: "needs membership" in as_user(cluster, "bob", editor, "apply", "--dry-run=server", "-n", ns, "-f",
                                                    "-", stdin=json.dumps(probe)).stderr,
             timeout=60, what="the promotion policy to be active")
    approved = job(cluster, "approved", tenancy.bucket, output__registerModelVersion={
        "model": MODEL, "version": "v3", "stage": "production",
        "servingTarget": {"selector": {"matchLabels": {"app": APP}}}})
    assert apply(cluster, ns, approved, "carol", promoter).returncode == 0

    def patch(kind: str, name: str, body, user: str = "bob", groups=editor, kind_of_patch: str = "merge"):
        return as_user(cluster, user, groups, "patch", kind, name, "-n", ns, f"--type={kind_of_patch}",
                       "-p", json.dumps(body))

    for field, change in (("spec.dataset", {"spec": {"dataset": {"uri": f"s3://{tenancy.bucket}/data/other.jsonl"}}}),
                          ("spec.baseModel", {"spec": {"baseModel": {"name": "another-base"}}})):
        refused = patch("finetunejob", "approved", change)
        assert refused.returncode != 0, f"{field} changed by a non-promoter"
        assert f"changing {field} of a FineTuneJob approved for production needs membership of group " \
               f"{PROMOTERS}; bob is not a member" in refused.stderr, refused.stderr
    assert as_user(cluster, "bob", editor, "label", "finetunejob", "approved", "-n", ns, "owner=bob").returncode == 0
    # A job's registration has no archived stage: candidate is its way out of production.
    demoted = patch("finetunejob", "approved", {"spec": {"output": {"registerModelVersion": {"stage": "candidate"}}}})
    assert demoted.returncode == 0, demoted.stderr
    # A promoter may still change what is approved.
    again = job(cluster, "approved-2", tenancy.bucket, output__registerModelVersion={
        "model": MODEL, "version": "v4", "stage": "production",
        "servingTarget": {"selector": {"matchLabels": {"app": APP}}}})
    assert apply(cluster, ns, again, "carol", promoter).returncode == 0
    changed = patch("finetunejob", "approved-2", {"spec": {"training": {"maxSteps": 3}}}, "carol", promoter)
    assert changed.returncode == 0, changed.stderr

    mv = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": "bot-v3"},
          "spec": {"model": MODEL, "version": "v3", "stage": "production",
                   "adapter": {"uri": f"s3://{tenancy.bucket}/out/approved/adapter/", "digest": "sha256:" + "a" * 64},
                   "baseModel": {"name": "smollm2-135m-instruct"},
                   "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
                   "rollback": {"query": "vector(0)", "threshold": 0.05},
                   "servingTarget": {"selector": {"matchLabels": {"app": APP}}}}}
    created = apply(cluster, ns, mv, "carol", promoter)
    assert created.returncode == 0, created.stderr
    stripped = patch("modelversion", "bot-v3", [{"op": "remove", "path": "/spec/rollback"}], kind_of_patch="json")
    assert stripped.returncode != 0, "spec.rollback removed by a non-promoter"
    assert f"changing spec.rollback of a ModelVersion approved for production needs membership of group " \
           f"{PROMOTERS}; bob is not a member" in stripped.stderr, stripped.stderr
    demoted = patch("modelversion", "bot-v3", {"spec": {"stage": "candidate"}})
    assert demoted.returncode != 0 and "changing spec.stage" in demoted.stderr, demoted.stderr
    assert as_user(cluster, "bob", editor, "label", "modelversion", "bot-v3", "-n", ns, "owner=bob").returncode == 0
    archived = patch("modelversion", "bot-v3", {"spec": {"stage": "archived"}})
    assert archived.returncode == 0, archived.stderr
    # Archived is no longer approved: editors edit it freely again (production needs the group, as before).
    assert patch("modelversion", "bot-v3", [{"op": "remove", "path": "/spec/rollback"}],
                 kind_of_patch="json").returncode == 0
