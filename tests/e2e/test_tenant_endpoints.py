"""Tenant safety at the network edges (issue 13, findings 6 and 11), on the real local cluster.

- Every spelling of a cloud metadata endpoint in tests/e2e/metadata_corpus/endpoints.txt is refused
  at admission when a tenant (client-certificate user of the team's group) sets it as
  spec.credentials.endpoint, and every ordinary endpoint there is admitted. The same corpus runs
  against finetune_api.endpoints in tests/unit/api/test_endpoints.py. Nothing here is dialled.
- The chart's inference example: the engine's LoRA API refuses unauthenticated loads and unloads
  from another process at the pod IP (on the process node every pod shares the host network, so
  this process is where a tenant's pod would be), and an adapter loaded through the agent stays.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers import wait_for
from inference_adapters import publish
from tenancy import GROUP, VERSION, as_user, install_tenancy, job

CORPUS = Path(__file__).parent / "metadata_corpus" / "endpoints.txt"


def corpus(verdict: str) -> list[str]:
    lines = [line.split(" ", 1) for line in CORPUS.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return [url for v, url in lines if v == verdict]


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3, base_model_uri):
    # Only the metadata guard is under test: without the allow-list an ordinary endpoint is admitted.
    for t in install_tenancy(cluster, core, s3, {"s3AllowList": {"enabled": False}}):
        # The apiserver starts enforcing a new policy a moment after it is created. A server-side
        # dry run: nothing is stored, no operator sees it, the address is never dialled.
        probe = json.dumps(job(cluster, "probe", t.bucket, credentials__endpoint="http://169.254.169.254"))
        wait_for(lambda: as_user(cluster, None, [], "create", "--dry-run=server", "-n", t.team_a, "-f", "-",
                                 stdin=probe).returncode != 0, what="the metadata-endpoint policy to be enforced")
        yield t


@pytest.fixture
def tenant(tenancy, user_api):
    return client.CustomObjectsApi(user_api(f"erin-{tenancy.tag}", (f"team-a-{tenancy.tag}",)))


def admitted(tenant, cluster, tenancy, endpoint: str) -> tuple[bool, str]:
    body = job(cluster, "endpoint", tenancy.bucket, credentials__endpoint=endpoint)
    try:
        tenant.create_namespaced_custom_object(GROUP, VERSION, tenancy.team_a, "finetunejobs", body, dry_run="All")
    except ApiException as err:
        assert err.status in (400, 403, 422), err.body
        return False, err.body
    return True, ""


def test_every_metadata_endpoint_form_in_the_corpus_is_refused_at_admission(cluster, tenancy, tenant):
    let_through = [url for url in corpus("refuse") if admitted(tenant, cluster, tenancy, url)[0]]
    assert not let_through, f"admitted as spec.credentials.endpoint: {let_through}"


def test_ordinary_endpoints_in_the_corpus_are_admitted(cluster, tenancy, tenant):
    refused = {url: why for url in corpus("accept") for ok, why in [admitted(tenant, cluster, tenancy, url)] if not ok}
    assert not refused, refused


def test_the_refusal_says_what_is_wrong_with_the_host(cluster, tenancy, tenant):
    for url, words in (("http://good.example.com@metadata", "user info"),
                       ("http://[::ffff:a9fe:a9fe]", "IPv4-mapped"),
                       ("http://0251.0376.0251.0376", "non-standard form"),
                       ("http://metadata", "names a cloud metadata service"),
                       ("http://169。254。169。254", "non-ASCII")):
        ok, why = admitted(tenant, cluster, tenancy, url)
        assert not ok and words in why, (url, why)


# --- the engine's LoRA API behind the agent (finding 11) ---------------------------------------

@pytest.fixture(scope="module")
def serving(cluster, core, s3, tenancy):
    from finetune_api.defaultmodel import prepare_default_model
    from finetune_api.digests import folder_digest

    base = prepare_default_model()
    adapter = publish(s3, base, f"s3://{tenancy.bucket}/adapters/v1", rank=4, seed=1, base_digest=folder_digest(base))

    def ready_pod():
        pods = core.list_namespaced_pod(tenancy.system, label_selector="app=finetune-inference").items
        return next((p for p in pods if any(c.type == "Ready" and c.status == "True"
                                            for c in p.status.conditions or [])), None)
    pod = wait_for(ready_pod, timeout=300, interval=2, what="the chart's inference example to be Ready")
    secret = core.read_namespaced_secret("finetune-inference-agent-token", tenancy.system)
    token = base64.b64decode(secret.data["token"]).decode()
    preloaded = requests.post(f"http://{pod.status.pod_ip}:8001/admin/preload", timeout=180,
                              headers={"Authorization": f"Bearer {token}"},
                              json={"model": "support-bot", "version": "v1", **adapter})
    assert preloaded.status_code == 200, preloaded.text
    return {"ip": pod.status.pod_ip, "token": token, "name": preloaded.json()["name"]}


def test_unauthenticated_loads_and_unloads_at_the_engine_are_refused_and_the_adapter_stays(core, tenancy, serving):
    engine = f"http://{serving['ip']}:8080"
    for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": f"Bearer {serving['token']}"}):
        unload = requests.post(f"{engine}/v1/unload_lora_adapter", json={"lora_name": serving["name"]},
                               headers=headers, timeout=30)
        assert unload.status_code == 401, (headers, unload.status_code, unload.text)
        load = requests.post(f"{engine}/v1/load_lora_adapter", json={"lora_name": "planted", "lora_path": "/tmp"},
                             headers=headers, timeout=30)
        assert load.status_code == 401, (headers, load.status_code, load.text)
    assert requests.get(f"{engine}/v1/models", timeout=10).status_code == 401
    assert requests.get(f"{engine}/health", timeout=10).status_code == 200  # the kubelet's probe still works

    state = requests.get(f"http://{serving['ip']}:8001/admin/state", timeout=30,
                         headers={"Authorization": f"Bearer {serving['token']}"}).json()
    mine = [a for a in state["adapters"] if a["name"] == serving["name"]]
    assert mine and mine[0]["loaded"], state["adapters"]
    key = base64.b64decode(core.read_namespaced_secret("finetune-inference-engine-key", tenancy.system).data["key"]).decode()
    models = requests.get(f"{engine}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert serving["name"] in [m["id"] for m in models["data"]]
    assert "planted" not in [m["id"] for m in models["data"]]


def test_a_tenant_cannot_read_the_engine_key_or_the_admin_token(cluster, tenancy):
    for secret in ("finetune-inference-engine-key", "finetune-inference-agent-token"):
        read = as_user(cluster, f"erin-{tenancy.tag}", [f"team-a-{tenancy.tag}"], "get", "secret", secret,
                       "-n", tenancy.system)
        assert read.returncode != 0 and "forbidden" in read.stderr, read.stdout
