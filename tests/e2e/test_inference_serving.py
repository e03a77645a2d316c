"""Serving on the process node: the reference engine + adapter agent as one Deployment (the layout of
examples/inference-deployment-reference.yaml), driven through the agent exactly as the operator and
clients would. One pod is shared by the whole module (the base model loads once); tests run in order.
"""
from __future__ import annotations

import copy
import os
import re
import signal
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client

from helpers import wait_for
from inference_adapters import publish, serving_namespace, tampered

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-admin-token"
ENGINE_KEY = "e2e-engine-key"  # the engine's --api-key ($VLLM_API_KEY), sent by the agent
MAX_RANK = 8   # small on purpose: a rank-16 adapter must be refused
BUCKET = "fto-test-inference"


def _patch_deployment(dep: dict) -> dict:
    dep = copy.deepcopy(dep)
    from finetune_api.defaultmodel import models_cache
    for c in dep["spec"]["template"]["spec"]["containers"]:
        args = c["args"]
        args[args.index("--max-lora-rank") + 1] = str(MAX_RANK)
        if c["name"] == "engine":
            # Reuse this machine's converted default model instead of converting it again in the pod.
            c["env"].append({"name": "FTO_CACHE_DIR", "value": str(models_cache().parent)})
        c["env"].append({"name": "VLLM_API_KEY" if c["name"] == "engine" else "FTO_ENGINE_API_KEY", "value": ENGINE_KEY})
    return dep


@pytest.fixture(scope="module")
def serving(cluster, api, core, s3):
    from finetune_api.defaultmodel import prepare_default_model
    from finetune_api.digests import folder_digest
    from finetune_trainer import s3 as s3mod

    docs = list(yaml.safe_load_all((ROOT / "examples" / "inference-deployment-reference.yaml").read_text()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    secret["stringData"]["token"] = TOKEN
    ns = serving_namespace(core, cluster, "t-inference", secret)
    deployment = _patch_deployment(next(d for d in docs if d["kind"] == "Deployment"))
    client.AppsV1Api(api).create_namespaced_deployment(ns, deployment)

    # While the pod starts: real adapters for the default model, in MinIO with trainer-format manifests.
    base = prepare_default_model()
    base_digest = folder_digest(base)
    s3mod.ensure_bucket(s3, BUCKET)
    run = f"s3://{BUCKET}/{ns}"
    adapters = {"v1": publish(s3, base, f"{run}/v1", rank=4, seed=1, base_digest=base_digest),
                "v2": publish(s3, base, f"{run}/v2", rank=4, seed=2, base_digest=base_digest),
                "big": publish(s3, base, f"{run}/big", rank=16, seed=3, base_digest=base_digest),
                "other-base": publish(s3, base, f"{run}/other-base", rank=4, seed=4, base_digest="sha256:" + "0" * 64),
                "embeddings": publish(s3, base, f"{run}/embeddings", rank=4, seed=7, base_digest=base_digest,
                                      lora={"r": 4, "alpha": 8, "targetModules": ["embed_tokens", "q_proj"]})}
    adapters["tampered"] = tampered(s3, base, base_digest, f"{run}/tampered", seed=5)

    def ready_pod():
        pods = core.list_namespaced_pod(ns, label_selector="app=smollm2-serving").items
        return next((p for p in pods if any(c.type == "Ready" and c.status == "True"
                                            for c in p.status.conditions or [])), None)
    pod = wait_for(ready_pod, timeout=240, interval=1, what="the serving pod to be Ready")
    yield {"ns": ns, "pod": pod, "ip": pod.status.pod_ip, "adapters": adapters, "base_digest": base_digest}
    core.delete_namespace(ns)


def admin(ip, path, body=None, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://{ip}:8001{path}"
    return requests.post(url, json=body, headers=headers, timeout=120) if body is not None else \
        requests.get(url, headers=headers, timeout=30)


def preload(serving, key, model="support-bot", **extra):
    body = {"model": model, "version": key, **{k: v for k, v in serving["adapters"][key].items() if k != "check"},
            **extra}
    return admin(serving["ip"], "/admin/preload", body)


def chat(ip, model, max_tokens=12):
    return requests.post(f"http://{ip}:8000/v1/chat/completions", timeout=120, json={
        "model": model, "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]})


def state(serving) -> dict:
    return admin(serving["ip"], "/admin/state").json()


def engine_models(serving) -> list:
    return [m["id"] for m in requests.get(f"http://{serving['ip']}:8080/v1/models", timeout=10,
                                          headers={"Authorization": f"Bearer {ENGINE_KEY}"}).json()["data"]]


def metric(ip, name, **labels) -> float:
    text = requests.get(f"http://{ip}:8000/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_the_pod_is_ready_with_the_base_model_and_the_trainers_base_digest(serving):
    assert requests.get(f"http://{serving['ip']}:8000/readyz", timeout=10).status_code == 200
    s = state(serving)
    assert s["pod"] == serving["pod"].metadata.name
    assert s["engine"]["ready"] and s["engine"]["maxLoraRank"] == MAX_RANK
    # The same digest the trainer writes into manifests for the default model.
    assert s["baseModel"] == {"name": "smollm2-135m-instruct", "digest": serving["base_digest"]}


def test_admin_calls_without_the_token_are_unauthorised(serving):
    assert admin(serving["ip"], "/admin/state", token=None).status_code == 401
    r = admin(serving["ip"], "/admin/preload", {"model": "x"}, token="wrong")
    assert r.status_code == 401 and r.json()["error"] == "Unauthorized"


def test_preload_verifies_and_loads_and_is_idempotent(serving):
    r = preload(serving, "v1")
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    assert name == f"support-bot--v1-{serving['adapters']['v1']['manifestDigest'][7:15]}"
    assert r.json()["alreadyLoaded"] is False
    assert name in engine_models(serving)
    loaded = {a["name"]: a for a in state(serving)["adapters"]}
    assert loaded[name]["loaded"] and loaded[name]["rank"] == 4 and loaded[name]["version"] == "v1"
    assert loaded[name]["digest"] == serving["adapters"]["v1"]["manifestDigest"]
    again = preload(serving, "v1")
    assert again.status_code == 200 and (again.json()["name"], again.json()["alreadyLoaded"]) == (name, True)
    assert metric(serving["ip"], "fto_agent_adapters_loaded") == 1


def test_the_engine_refuses_lora_calls_without_its_key_so_the_agent_cannot_be_skipped(serving):
    name = next(a["name"] for a in state(serving)["adapters"] if a["version"] == "v1")
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        r = requests.post(f"http://{serving['ip']}:8080/v1/unload_lora_adapter", json={"lora_name": name},
                          headers=headers, timeout=30)
        assert r.status_code == 401, r.text
    assert name in engine_models(serving)


def test_flipping_the_alias_sends_clients_to_the_adapter(serving):
    base_answer = chat(serving["ip"], "smollm2-135m-instruct").json()["choices"][0]["message"]["content"]
    assert chat(serving["ip"], "support-bot").status_code == 404  # no alias yet
    v1 = preload(serving, "v1").json()["name"]
    assert admin(serving["ip"], "/admin/flip", {"model": "support-bot", "name": v1}).status_code == 200
    r = chat(serving["ip"], "support-bot")
    assert r.status_code == 200, r.text
    assert r.json()["model"] == v1 and r.headers["X-Fto-Served-Name"] == v1 and r.headers["X-Fto-Version"] == "v1"
    assert r.json()["choices"][0]["message"]["content"] != base_answer  # the adapter really changes the output
    v2 = preload(serving, "v2").json()["name"]
    admin(serving["ip"], "/admin/flip", {"model": "support-bot", "name": v2})
    r = chat(serving["ip"], "support-bot")
    assert r.json()["model"] == v2 and r.headers["X-Fto-Version"] == "v2"
    aliases = requests.get(f"http://{serving['ip']}:8000/v1/models", timeout=10).json()["data"]
    assert [a["id"] for a in aliases] == ["support-bot"]


def test_weights_split_traffic_between_versions(serving):
    names = {a["version"]: a["name"] for a in state(serving)["adapters"]}
    r = admin(serving["ip"], "/admin/weights", {"model": "support-bot", "weights": {names["v1"]: 50, names["v2"]: 50}})
    assert r.status_code == 200, r.text
    seen = [chat(serving["ip"], "support-bot", max_tokens=1).headers["X-Fto-Version"] for _ in range(30)]
    # Binomial(30, 0.5): fewer than 5 of either happens with probability ~3e-5.
    assert 5 <= seen.count("v1") <= 25 and seen.count("v1") + seen.count("v2") == 30
    assert metric(serving["ip"], "fto_agent_alias_weight", model="support-bot", version="v1") == 50
    refused = admin(serving["ip"], "/admin/weights", {"model": "support-bot", "weights": {names["v1"]: 60,
                                                                                           names["v2"]: 30}})
    assert refused.status_code == 400
    unload = admin(serving["ip"], "/admin/unload", {"name": names["v1"]})
    assert unload.status_code == 409 and unload.json()["error"] == "InUse"


@pytest.mark.parametrize("key, extra, reason", [
    ("tampered", {}, "DigestMismatch"),
    ("v1", {"manifestDigest": "sha256:" + "1" * 64, "version": "v1-pinned"}, "DigestMismatch"),
    ("big", {}, "RankTooLarge"),
    ("other-base", {}, "BaseModelMismatch"),
    ("embeddings", {}, "TargetModulesMissing"),
])
def test_unfit_adapters_are_refused_and_nothing_is_loaded(serving, key, extra, reason):
    before = engine_models(serving), state(serving)["adapters"]
    r = preload(serving, key, **extra)
    assert r.status_code == 422 and r.json()["error"] == reason, r.text
    assert (engine_models(serving), state(serving)["adapters"]) == before


def test_injected_faults_answer_500_and_are_counted(serving):
    names = {a["version"]: a["name"] for a in state(serving)["adapters"]}
    admin(serving["ip"], "/admin/flip", {"model": "support-bot", "name": names["v2"]})
    r = admin(serving["ip"], "/admin/faults", {"name": names["v2"], "errorRate": 1.0})
    assert r.status_code == 200, r.text
    before = metric(serving["ip"], "fto_agent_requests_total", model="support-bot", version="v2", code="500")
    codes = [chat(serving["ip"], "support-bot", max_tokens=1).status_code for _ in range(5)]
    assert codes == [500] * 5
    after = metric(serving["ip"], "fto_agent_requests_total", model="support-bot", version="v2", code="500")
    assert after - before == 5
    assert state(serving)["faults"] == {names["v2"]: {"errorRate": 1.0}}
    admin(serving["ip"], "/admin/faults", {"name": names["v2"], "errorRate": 0})
    assert chat(serving["ip"], "support-bot", max_tokens=1).status_code == 200


def test_unload_frees_a_version_no_alias_uses(serving):
    names = {a["version"]: a["name"] for a in state(serving)["adapters"]}
    r = admin(serving["ip"], "/admin/unload", {"name": names["v1"]})
    assert r.status_code == 200, r.text
    assert names["v1"] not in engine_models(serving)
    assert [a["version"] for a in state(serving)["adapters"]] == ["v2"]
    flip = admin(serving["ip"], "/admin/flip", {"model": "support-bot", "name": names["v1"]})
    assert flip.status_code == 409 and flip.json()["error"] == "NotLoaded"


def test_the_agent_reloads_its_adapters_after_the_engine_restarts(serving, core):
    pod = core.read_namespaced_pod(serving["pod"].metadata.name, serving["ns"])
    engine = next(c for c in pod.status.container_statuses if c.name == "engine")
    os.kill(int(engine.container_id.split("://")[1]), signal.SIGKILL)
    v2 = next(a["name"] for a in state(serving)["adapters"] if a["version"] == "v2")

    def engine_back_with_v2():
        return v2 in engine_models(serving) and all(a["loaded"] for a in state(serving)["adapters"])
    wait_for(engine_back_with_v2, timeout=120, interval=1, what="the engine to restart and the agent to reload v2")
    r = chat(serving["ip"], "support-bot", max_tokens=1)
    assert r.status_code == 200 and r.headers["X-Fto-Version"] == "v2"
