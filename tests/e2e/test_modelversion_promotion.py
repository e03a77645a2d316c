"""ModelVersions promoted onto real inference pods by the real operator.

One module-wide environment: a namespace with the reference engine + adapter agent Deployment
(examples/inference-deployment-reference.yaml) on the process node, real LoRA adapters for the
default model in MinIO, a real Prometheus scraping the agents every second, and the operator as a
subprocess (`finetune-operator`, no Lease: always leader). Each test stands alone: it gets a model
name of its own (the `model` fixture; a model's production record, aliases and metrics are its
own) and promotes whatever production version it needs itself, so any one test runs alone
(`-k canary`). Durations (canary abort, rollback) are measured and printed, never asserted.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client

from devcluster import components
from helpers import wait_for
from inference_adapters import publish, serving_namespace, tampered
from operator_process import OperatorProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
TOKEN = "e2e-modelversion-token"
MAX_RANK = 8
APP = "smollm2-serving"
BUCKET = "fto-test-modelversions"
ERROR_RATIO = ('sum(rate(fto_agent_requests_total{model="$model",version="$version",code=~"5.."}[10s])) / '
               'sum(rate(fto_agent_requests_total{model="$model",version="$version"}[10s]))')


# --- module setup ------------------------------------------------------------------------------------------------
class Prometheus:
    """The Debian prometheus binary scraping the agents' :8000/metrics every second (file_sd targets)."""

    def __init__(self, folder: Path, namespace: str):
        # The operator scopes every query to the version's namespace (namespace="<ns>"), so the
        # agents' series carry that label, as a Kubernetes service discovery would give them.
        self.folder, self.port, self.namespace = folder, free_port(), namespace
        self.targets = folder / "targets.json"
        self.set_targets([])
        (folder / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "agents", "scrape_interval": "1s", "scrape_timeout": "900ms",
                                "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}]}]}))
        self.log = open(folder / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(lambda: requests.get(f"{self.url}/-/ready", timeout=1).ok, timeout=60, what="Prometheus ready")

    def set_targets(self, ips) -> None:
        tmp = self.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [f"{ip}:8000" for ip in sorted(ips)],
                                    "labels": {"namespace": self.namespace}}]))
        tmp.replace(self.targets)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def _deployment(replicas: int) -> tuple[dict, dict]:
    from finetune_trainer.basemodel import models_cache
    docs = list(yaml.safe_load_all((ROOT / "examples" / "inference-deployment-reference.yaml").read_text()))
    secret = copy.deepcopy(next(d for d in docs if d["kind"] == "Secret"))
    secret["stringData"]["token"] = TOKEN
    dep = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    dep["spec"]["replicas"] = replicas
    for c in dep["spec"]["template"]["spec"]["containers"]:
        args = c["args"]
        args[args.index("--max-lora-rank") + 1] = str(MAX_RANK)
        if "--max-loras" in args:
            args[args.index("--max-loras") + 1] = "12"
        if c["name"] == "engine":
            c["env"].append({"name": "FTO_CACHE_DIR", "value": str(models_cache().parent)})
    return secret, dep


@pytest.fixture(scope="module")
def env(cluster, api, core, s3, crds, tmp_path_factory):
    from finetune_trainer import s3 as s3mod
    from finetune_trainer.basemodel import prepare_default_model
    from finetune_trainer.model import folder_digest

    secret, dep = _deployment(replicas=2)
    ns = serving_namespace(core, cluster, "t-mv", secret)
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, dep)

    base = prepare_default_model()
    base_digest = folder_digest(base)
    s3mod.ensure_bucket(s3, BUCKET)
    run = f"s3://{BUCKET}/{ns}"
    adapters = {v: publish(s3, base, f"{run}/{v}", rank=4, seed=i, base_digest=base_digest,
                           metrics={"eval_loss": 1.0 + i / 10})
                for i, v in enumerate(["v1", "v2", "v3", "v4", "v5", "v6", "v7"], start=1)}
    adapters["big"] = publish(s3, base, f"{run}/big", rank=16, seed=20, base_digest=base_digest)
    adapters["other-base"] = publish(s3, base, f"{run}/other-base", rank=4, seed=21, base_digest="sha256:" + "0" * 64)
    adapters["bad-gates"] = publish(s3, base, f"{run}/bad-gates", rank=4, seed=22, base_digest=base_digest,
                                    metrics={"eval_loss": 3.5})
    adapters["tampered"] = tampered(s3, base, base_digest, f"{run}/tampered", seed=30)

    folder = tmp_path_factory.mktemp("modelversion")
    prom = Prometheus(folder, ns)
    # The production records live in the operator's own namespace, apart from the tenant's.
    records = f"{ns}-records"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=records)))
    operator = OperatorProcess(cluster, [ns], folder / "operator.log", env={"FTO_PROMETHEUS_URL": prom.url},
                               args=("--record-namespace", records)).start()
    e = {"ns": ns, "adapters": adapters, "prom": prom, "operator": operator, "apps": apps, "core": core,
         "crds": client.CustomObjectsApi(api), "log": folder / "operator.log", "records": records}
    wait_for(lambda: len(ready_ips(e)) == 2, timeout=300, interval=1, what="2 serving pods Ready")
    prom.set_targets(ready_ips(e).values())
    yield e
    operator.stop()
    prom.stop()
    print(f"\noperator log: {folder / 'operator.log'}")
    core.delete_namespace(ns)
    core.delete_namespace(records)


_models = iter(range(1, 1000))


@pytest.fixture
def model(env) -> str:
    """A model of this test's own: its record, aliases and metric series start empty."""
    return f"bot{next(_models)}"


# --- helpers -----------------------------------------------------------------------------------------------------
def ready_ips(e) -> dict:
    pods = e["core"].list_namespaced_pod(e["ns"], label_selector=f"app={APP}").items
    return {p.metadata.name: p.status.pod_ip for p in pods if p.status.pod_ip and not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])}


def served(e, key: str, model: str) -> str:
    return f"{model}--{key}-{e['adapters'][key]['manifestDigest'][7:15]}"


def admin(ip, path, body=None):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"http://{ip}:8001{path}"
    r = requests.post(url, json=body, headers=headers, timeout=60) if body is not None else \
        requests.get(url, headers=headers, timeout=10)
    r.raise_for_status()
    return r.json()


def states(e) -> dict:
    return {name: admin(ip, "/admin/state") for name, ip in ready_ips(e).items()}


def loaded(e) -> dict:
    return {pod: sorted(a["name"] for a in s["adapters"]) for pod, s in states(e).items()}


def aliases(e, model: str) -> dict:
    return {pod: {a["name"]: a["weight"] for a in s["aliases"].get(model, [])} for pod, s in states(e).items()}


def mv(e, name: str) -> dict:
    return e["crds"].get_namespaced_custom_object(GROUP, VERSION, e["ns"], "modelversions", name)


def status(e, name: str) -> dict:
    return mv(e, name).get("status") or {}


def create_mv(e, key: str, model: str, stage: str = "production", adapter: dict | None = None, **spec) -> str:
    a = e["adapters"].get(key) or e["adapters"]["v1"]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": f"{model}-{key}"},
            "spec": {"model": model, "version": key,
                     "adapter": adapter or {"uri": a["adapterUri"] + "/", "digest": a["manifestDigest"]},
                     "baseModel": {"name": "smollm2-135m-instruct"},
                     "credentials": {"secretRef": {"name": "s3-credentials"},
                                     "endpoint": e["operator"].cluster.s3_endpoint},
                     "stage": stage,
                     "servingTarget": {"selector": {"matchLabels": {"app": APP}}, "port": 8001,
                                       "adminTokenSecretRef": {"name": "adapter-agent-token"}}, **spec}}
    e["crds"].create_namespaced_custom_object(GROUP, VERSION, e["ns"], "modelversions", body)
    return body["metadata"]["name"]


def set_stage(e, name: str, stage: str) -> None:
    e["crds"].patch_namespaced_custom_object(GROUP, VERSION, e["ns"], "modelversions", name, {"spec": {"stage": stage}})


def wait_phase(e, name: str, phase: str, reason: str | None = None, timeout: float = 180) -> dict:
    def check():
        s = status(e, name)
        return s if s.get("phase") == phase and (reason is None or s.get("reason") == reason) else None
    try:
        return wait_for(check, timeout=timeout, interval=0.5, what=f"{name} phase {phase} {reason or ''}")
    except AssertionError:
        print(json.dumps(status(e, name), indent=1)[:4000])
        print(e["log"].read_text()[-4000:])
        raise


def condition(s: dict, ctype: str) -> dict:
    return next(c for c in s.get("conditions", []) if c["type"] == ctype)


def chat_version(ip: str, model: str) -> tuple[int, str, str]:
    r = requests.post(f"http://{ip}:8000/v1/chat/completions", timeout=60, json={
        "model": model, "max_tokens": 6, "temperature": 0,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    text = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else ""
    return r.status_code, r.headers.get("X-Fto-Version", ""), text


def events(e, name: str) -> list:
    return [(ev.reason, ev.message) for ev in e["core"].list_namespaced_event(
        e["ns"], field_selector=f"involvedObject.name={name}").items]


def sample(text: str, name: str, **labels) -> float | None:
    """The sum of the samples of name with these labels; None when there is no such sample (a counter
    that was never incremented shows only its HELP/TYPE lines, which must not count as present)."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total, found = total + float(m.group(2)), True
    return total if found else None


def reconciles(e) -> float | None:
    """fto_operator_reconciles_total{kind="modelversions"}, if this operator exports it."""
    text = e["operator"].metrics()
    for kind in ("modelversions", "ModelVersion"):
        found = sample(text, "fto_operator_reconciles_total", kind=kind)
        if found is not None:
            return found
    return None


def status_writes(e) -> float | None:
    return sample(e["operator"].metrics(), "fto_operator_status_writes_total", kind="modelversions")


def passes_after_now(e, bump: list, touch: list = ()) -> None:
    """Proof that the operator ran passes after this point, instead of a fixed sleep. Each name in bump
    gets a spec change that changes nothing it does (spec.gates, or spec.rollback on a version that is
    not production: a new metadata.generation) and is waited on until status.observedGeneration
    reaches it: that pass, its actions included, is over. Each name in touch gets an annotation (a
    watch event, no new generation, so no status field to wait on): the operator's reconcile counter
    must then have counted at least one more ModelVersion pass per touched object."""
    before = reconciles(e)
    stamp = str(time.time())
    for name in touch:
        e["crds"].patch_namespaced_custom_object(GROUP, VERSION, e["ns"], "modelversions", name, {
            "metadata": {"annotations": {"e2e.fto.dev/touched": stamp}}})
    wanted = {}
    for name in bump:
        is_production = status(e, name).get("phase") == "Production"
        change = {"gates": {"metrics": [{"metric": "eval_loss", "max": 1000}]}} if is_production else \
            {"rollback": {"query": "vector(0)", "threshold": 1}}
        obj = e["crds"].patch_namespaced_custom_object(GROUP, VERSION, e["ns"], "modelversions", name,
                                                       {"spec": change})
        wanted[name] = obj["metadata"]["generation"]
    for name, generation in wanted.items():
        wait_for(lambda: status(e, name).get("observedGeneration") == generation, timeout=60, interval=0.3,
                 what=f"{name} observedGeneration {generation}")
    if touch:
        assert before is not None, "the operator exports no fto_operator_reconciles_total{kind=\"modelversions\"}"
        wait_for(lambda: reconciles(e) >= before + len(wanted) + len(touch), timeout=60, interval=0.3,
                 what=f"{len(wanted) + len(touch)} more ModelVersion passes")


def promote(e, key: str, model: str, **spec) -> str:
    name = create_mv(e, key, model, **spec)
    wait_phase(e, name, "Production")
    return name


class Traffic:
    """Clients calling the alias on every pod (a few requests a second: gentle on 2 shared cores)."""

    def __init__(self, e, model: str, per_second: float = 4.0):
        self.e, self.delay, self.stop_flag, self.model = e, 1.0 / per_second, threading.Event(), model
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_flag.is_set():
            for ip in ready_ips(self.e).values():
                try:
                    requests.post(f"http://{ip}:8000/v1/chat/completions", timeout=30, json={
                        "model": self.model, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
                except requests.RequestException:
                    pass
                self.stop_flag.wait(self.delay)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(timeout=60)


# --- tests: each stands alone (its own model, its own production version) ---------------------------------------
def test_promote_to_two_replicas_then_a_third_converges(env, model):
    e = env
    ips = ready_ips(e)
    before = {ip: chat_version(ip, model) for ip in ips.values()}
    assert all(code == 404 for code, _, _ in before.values())  # no alias yet
    s = wait_phase(e, create_mv(e, "v1", model), "Production")
    assert s["servedName"] == served(e, "v1", model)
    assert all(a == {served(e, "v1", model): 100} for a in aliases(e, model).values())
    v1_answers = {chat_version(ip, model)[1:] for ip in ips.values()}
    assert {v for v, _ in v1_answers} == {"v1"}

    s = wait_phase(e, create_mv(e, "v2", model), "Production")
    assert sorted(r["pod"] for r in s["servedBy"]) == sorted(ips)
    assert all(r["loaded"] and r["aliasTarget"] == served(e, "v2", model) and r["weight"] == 100
               for r in s["servedBy"])
    assert condition(s, "Ready")["status"] == "True" and condition(s, "Promoted")["observedGeneration"] == 1
    assert s["promotedAt"] and s["productionRecord"] == f"{e['records']}/fto-record-{e['ns']}.{model}"
    record = e["core"].read_namespaced_config_map(f"fto-record-{e['ns']}.{model}", e["records"])
    assert record.data["production"] == f"{model}-v2" and record.data["previous"] == f"{model}-v1"
    # Clients calling the alias get the new adapter's behaviour; the old version stays loaded for a revert.
    for ip in ips.values():
        code, version, text = chat_version(ip, model)
        assert (code, version) == (200, "v2")
        assert (version, text) not in v1_answers
    assert all(served(e, "v1", model) in names for names in loaded(e).values())
    old = wait_phase(e, f"{model}-v1", "Registered", "Superseded")
    assert "v2" in old["message"]
    assert ("Promoted" in [r for r, _ in events(e, f"{model}-v2")])

    # A third replica, started later, converges within seconds.
    e["apps"].patch_namespaced_deployment_scale(APP, e["ns"], {"spec": {"replicas": 3}})
    try:
        wait_for(lambda: len(ready_ips(e)) == 3, timeout=300, interval=1, what="the third pod Ready")
        e["prom"].set_targets(ready_ips(e).values())
        wait_for(lambda: all(a == {served(e, "v2", model): 100} for a in aliases(e, model).values()) and
                 len(aliases(e, model)) == 3, timeout=60, interval=0.5, what="the third pod to serve v2")
        wait_for(lambda: len(status(e, f"{model}-v2")["servedBy"]) == 3 and all(
            r["aliasTarget"] == served(e, "v2", model) for r in status(e, f"{model}-v2")["servedBy"]), timeout=30,
            what="status to list the 3 pods")
        metrics = e["operator"].metrics()
        assert sample(metrics, "fto_operator_promotions_total", namespace=e["ns"], model=model,
                      result="succeeded") == 2
        # 2 versions preloaded on 2 pods, then v2 on the third: every one of them measured.
        assert sample(metrics, "fto_operator_adapter_load_seconds_count", namespace=e["ns"], model=model) >= 4
    finally:
        e["apps"].patch_namespaced_deployment_scale(APP, e["ns"], {"spec": {"replicas": 2}})
        wait_for(lambda: len(ready_ips(e)) == 2, timeout=120, interval=1, what="back to 2 serving pods")
        e["prom"].set_targets(ready_ips(e).values())


@pytest.mark.parametrize("key, adapter_override, reason, condition_type", [
    ("tampered", None, "DigestMismatch", "Registered"),
    ("v7", "wrong-digest", "DigestMismatch", "Registered"),
    ("big", None, "IncompatibleAdapter", "Compatible"),
    ("other-base", None, "IncompatibleAdapter", "Compatible"),
])
def test_refusals_load_nothing_anywhere(env, model, key, adapter_override, reason, condition_type):
    e = env
    before, before_aliases = loaded(e), aliases(e, model)
    adapter = None
    if adapter_override == "wrong-digest":
        a = e["adapters"][key]
        adapter = {"uri": a["adapterUri"] + "/", "digest": "sha256:" + "1" * 64}
    name = create_mv(e, key if adapter is None else f"{key}-pinned", model, adapter=adapter)
    phase = "Failed" if reason == "DigestMismatch" else "Registered"
    s = wait_phase(e, name, phase, reason, timeout=90)
    c = condition(s, condition_type)
    assert c["status"] == "False" and c["reason"] == reason
    if reason == "IncompatibleAdapter":
        # The message names the pods and the numbers.
        assert all(pod in s["message"] for pod in ready_ips(e))
        assert ("rank 16 exceeds the engine's max LoRA rank 8" in s["message"]) == (key == "big")
    passes_after_now(e, bump=[name])  # the operator looked again (a new generation): still nothing
    s = status(e, name)
    assert (s["phase"], s["reason"]) == (phase, reason)
    assert loaded(e) == before
    assert aliases(e, model) == before_aliases


def test_a_gate_failure_keeps_the_version_a_candidate(env, model):
    e = env
    promote(e, "v1", model)
    before = loaded(e)
    name = create_mv(e, "bad-gates", model, gates={"metrics": [{"metric": "eval_loss", "max": 2.0}],
                                                   "mustBeatProduction": {"metric": "eval_loss"}})
    s = wait_phase(e, name, "Registered", "GatesFailed", timeout=90)
    assert condition(s, "GatesPassed")["status"] == "False"
    assert {g["metric"]: (g["value"], g["passed"]) for g in s["gates"]} == {
        "eval_loss": (3.5, False), "eval_loss (vs production)": (3.5, False)}
    assert "eval_loss 3.5 > max 2" in s["message"]
    assert loaded(e) == before
    assert sample(e["operator"].metrics(), "fto_operator_gate_failures_total", namespace=e["ns"], model=model) == 1


def test_a_settled_production_version_is_looked_at_again_but_writes_no_status(env, model):
    """Converging polls the pods every 2 s; with nothing changed those passes write nothing."""
    e = env
    name = promote(e, "v1", model)
    wait_for(lambda: condition(status(e, name), "Ready")["status"] == "True", timeout=60, what=f"{name} Ready")
    passes_after_now(e, bump=[name])
    writes, passes, version = status_writes(e), reconciles(e), mv(e, name)["metadata"]["resourceVersion"]
    if writes is None or passes is None:
        pytest.skip("this operator does not export fto_operator_status_writes_total / reconciles_total")
    wait_for(lambda: reconciles(e) >= passes + 5, timeout=60, interval=0.5, what="5 more ModelVersion passes")
    assert mv(e, name)["metadata"]["resourceVersion"] == version
    assert status_writes(e) == writes, "a pass that changed nothing wrote status"


def test_two_versions_asking_for_production_at_once_exactly_one_wins(env, model):
    e = env
    for key in ("v5", "v6"):
        create_mv(e, key, model, stage="candidate")
    for key in ("v5", "v6"):
        wait_phase(e, f"{model}-{key}", "Registered", "Candidate", timeout=90)
    for key in ("v5", "v6"):
        set_stage(e, f"{model}-{key}", "production")

    def settled():
        got = {k: status(e, f"{model}-{k}") for k in ("v5", "v6")}
        return got if all((s.get("phase"), s.get("reason")) in (("Production", "Promoted"),
                                                                ("Registered", "PromotionConflict"),
                                                                ("Registered", "Superseded")) for s in got.values()) \
            else None
    got = wait_for(settled, timeout=120, interval=0.5, what="both requests decided")
    winners = [k for k, s in got.items() if s["phase"] == "Production"]
    assert len(winners) == 1, got
    loser = ({"v5", "v6"} - set(winners)).pop()
    # Both requests seen while neither is decided: one takes the promotion lock and the other is
    # refused (PromotionConflict, naming the winner). When the first promotion completes before the
    # second request is looked at, the second is an ordinary promotion that supersedes the first.
    # Either way exactly one version serves, and the decision does not change afterwards.
    loser_reason = got[loser]["reason"]
    assert loser_reason in ("PromotionConflict", "Superseded"), got[loser]
    if loser_reason == "PromotionConflict":
        assert f"{model}-{winners[0]}" in got[loser]["message"]
    passes_after_now(e, bump=[f"{model}-{winners[0]}"], touch=[f"{model}-{loser}"])
    assert status(e, f"{model}-{winners[0]}")["phase"] == "Production"
    assert status(e, f"{model}-{loser}")["reason"] == loser_reason
    assert all(a == {served(e, winners[0], model): 100} for a in aliases(e, model).values())


def _broken_agent(e) -> dict:
    any_ip = next(iter(ready_ips(e).values()))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken-agent", "labels": {"app": APP}},
            "spec": {"nodeSelector": {"fto.dev/process-node": "true"}, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "adapter-agent", "image": "finetune-operator/adapter-agent:0.1.0",
                                     # It shares a healthy pod's engine; its own preloads fail at the download.
                                     "args": ["--engine-url", f"http://{any_ip}:8080", "--host", "$(POD_IP)",
                                              "--adapter-dir", "/adapters", "--max-lora-rank", str(MAX_RANK)],
                                     "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                             {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                             {"name": "FTO_AGENT_TOKEN", "value": TOKEN},
                                             {"name": "AWS_ACCESS_KEY_ID", "value": components.MINIO_USER},
                                             {"name": "AWS_SECRET_ACCESS_KEY", "value": "not-the-key"},
                                             {"name": "AWS_ENDPOINT_URL", "value": e["operator"].cluster.s3_endpoint}],
                                     "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8000}, "periodSeconds": 1},
                                     "volumeMounts": [{"name": "adapters", "mountPath": "/adapters"}]}],
                     "volumes": [{"name": "adapters", "emptyDir": {}}]}}


def test_a_replica_refusing_the_preload_leaves_the_old_version_serving(env, model):
    """A pod whose agent cannot read S3 (wrong secret key): its preload fails, so nothing switches."""
    e = env
    promote(e, "v1", model)
    e["core"].create_namespaced_pod(e["ns"], _broken_agent(e))
    try:
        wait_for(lambda: "broken-agent" in ready_ips(e), timeout=120, interval=1, what="the broken agent Ready")
        healthy = [p for p in ready_ips(e) if p != "broken-agent"]
        name = create_mv(e, "v3", model)
        s = wait_phase(e, name, "Registered", "PreloadFailed", timeout=180)
        assert "broken-agent" in s["message"] and "AccessDenied" in s["message"]
        row = next(r for r in s["servedBy"] if r["pod"] == "broken-agent")
        assert not row["loaded"] and "AccessDenied" in row["message"]
        assert condition(s, "Promoted")["status"] == "False"
        now = loaded(e)
        assert all(served(e, "v3", model) not in now[p] for p in healthy)  # unloaded again where it had loaded
        assert all(aliases(e, model)[p] == {served(e, "v1", model): 100} for p in healthy)
        assert status(e, f"{model}-v1")["phase"] == "Production"
    finally:
        e["core"].delete_namespaced_pod("broken-agent", e["ns"], grace_period_seconds=0)
        wait_for(lambda: "broken-agent" not in [p.metadata.name for p in e["core"].list_namespaced_pod(e["ns"]).items],
                 timeout=60, what="broken agent gone")


def test_a_canary_is_aborted_by_the_analysis_with_nothing_left_on_the_bad_version(env, model):
    e = env
    promote(e, "v1", model)
    bad = served(e, "v4", model)
    for ip in ready_ips(e).values():
        admin(ip, "/admin/faults", {"name": bad, "errorRate": 1.0})
    try:
        with Traffic(e, model):
            name = create_mv(e, "v4", model, rollout={
                "strategy": "Canary", "steps": [{"weight": 20, "pauseSeconds": 300}],
                "analysis": {"query": ERROR_RATIO, "threshold": 0.5, "intervalSeconds": 1}})
            wait_for(lambda: (status(e, name).get("canary") or {}).get("weight") == 20 or
                     status(e, name).get("phase") == "RolledBack", timeout=180, interval=0.3, what="the 20 % step")
            s = wait_phase(e, name, "RolledBack", "CanaryAborted", timeout=120)
        assert all(a.get(bad, 0) == 0 and a.get(served(e, "v1", model)) == 100 for a in aliases(e, model).values())
        rb = s["rollback"]
        assert rb["trigger"] == "canary" and rb["value"] > rb["threshold"] == 0.5 and rb["restoredVersion"] == "v1"
        assert 'version="v4"' in rb["query"]
        print(f"\ncanary abort: breach seen -> 0 % on v4 on {len(ready_ips(e))} pods in {rb['seconds']} s")
        assert any(r == "CanaryAborted" for r, _ in events(e, name))
        assert status(e, f"{model}-v1")["phase"] == "Production"
    finally:
        for ip in ready_ips(e).values():
            admin(ip, "/admin/faults", {"name": bad, "errorRate": 0})


def test_an_error_rate_after_full_promotion_rolls_back_automatically(env, model):
    e = env
    previous = "v1"
    promote(e, previous, model)
    name = create_mv(e, "v7", model, rollback={"query": ERROR_RATIO, "threshold": 0.5, "intervalSeconds": 1,
                                               "bakeWindowSeconds": 600})
    wait_phase(e, name, "Production", timeout=180)
    assert all(a == {served(e, "v7", model): 100} for a in aliases(e, model).values())
    try:
        for ip in ready_ips(e).values():
            admin(ip, "/admin/faults", {"name": served(e, "v7", model), "errorRate": 1.0})
        with Traffic(e, model):
            s = wait_phase(e, name, "RolledBack", "RolledBack", timeout=120)
    finally:
        for ip in ready_ips(e).values():
            admin(ip, "/admin/faults", {"name": served(e, "v7", model), "errorRate": 0})
    assert all(a == {served(e, previous, model): 100} for a in aliases(e, model).values())
    rb = s["rollback"]
    assert rb["trigger"] == "analysis" and rb["restoredVersion"] == previous and rb["value"] > rb["threshold"]
    assert 'version="v7"' in rb["query"] and s.get("rolledBackAt")
    assert condition(s, "Ready")["status"] == "False" and condition(s, "Ready")["reason"] == "RolledBack"
    print(f"\nautomatic rollback: breach seen -> {len(ready_ips(e))} pods on {previous} in {rb['seconds']} s")
    assert any(r == "RolledBack" and "0.5" in m for r, m in events(e, name))
    assert mv(e, name)["spec"]["stage"] == "production"  # the spec is never edited
    restored = wait_phase(e, f"{model}-{previous}", "Production", "ServingAgain", timeout=30)
    assert "v7" in restored["message"]
    # Once rolled back it never converges pods back onto itself.
    assert not [m for r, m in events(e, name) if r in ("VersionSkew", "ServingAgain")]
    metrics = e["operator"].metrics()
    assert sample(metrics, "fto_operator_rollbacks_total", namespace=e["ns"], model=model, trigger="analysis") == 1
    assert sample(metrics, "fto_operator_rollback_duration_seconds_count", namespace=e["ns"], model=model) == 1
    for ip in ready_ips(e).values():
        code, version, _ = chat_version(ip, model)
        assert (code, version) == (200, previous)


def test_the_first_version_of_a_model_rolls_back_to_the_base_model(env, model):
    e = env
    name = create_mv(e, "v5", model, rollback={"query": ERROR_RATIO, "threshold": 0.5, "intervalSeconds": 1,
                                               "bakeWindowSeconds": 600})
    wait_phase(e, name, "Production", timeout=180)
    bad = served(e, "v5", model)
    try:
        for ip in ready_ips(e).values():
            assert chat_version(ip, model)[:2] == (200, "v5")
            admin(ip, "/admin/faults", {"name": bad, "errorRate": 1.0})
        with Traffic(e, model):
            s = wait_phase(e, name, "RolledBack", "RolledBack", timeout=120)
        base = {st["baseModel"]["name"] for st in states(e).values()}
        assert len(base) == 1
        base_name = next(iter(base))
        assert all(a == {base_name: 100} for a in aliases(e, model).values())
        assert s["rollback"]["restoredVersion"] == "base" and "the base model serves the alias again" in s["message"]
        print(f"\nrollback to the base model: {len(ready_ips(e))} pods in {s['rollback']['seconds']} s")
        for ip in ready_ips(e).values():
            assert chat_version(ip, model)[:2] == (200, "base"), "clients calling the alias get the base model"
        # A pod whose alias is lost (an agent restarted empty) is put back on the base model.
        pod, ip = sorted(ready_ips(e).items())[0]
        admin(ip, "/admin/weights", {"model": model, "weights": {bad: 100}})
        wait_for(lambda: aliases(e, model)[pod] == {base_name: 100}, timeout=30, what="the alias back on the base")
    finally:
        for ip in ready_ips(e).values():
            admin(ip, "/admin/faults", {"name": bad, "errorRate": 0})


def test_setting_an_older_version_back_to_production_is_a_manual_rollback(env, model):
    e = env
    promote(e, "v1", model)
    current = promote(e, "v2", model)
    name = f"{model}-v1"
    wait_phase(e, name, "Registered", "Superseded", timeout=30)
    set_stage(e, name, "candidate")  # it still said production: a new request needs a spec change
    wait_phase(e, name, "Registered", "Candidate", timeout=30)
    set_stage(e, name, "production")
    wait_phase(e, name, "Production", timeout=120)
    assert all(a == {served(e, "v1", model): 100} for a in aliases(e, model).values())
    replaced = wait_phase(e, current, "Registered", "Superseded", timeout=30)
    # The version rolled back from says so: status.rollback.trigger manual, and when.
    assert replaced["rollback"] == {"restoredVersion": "v1", "trigger": "manual"} and replaced["rolledBackAt"]
    assert "manual rollback" in replaced["message"]
    assert sample(e["operator"].metrics(), "fto_operator_rollbacks_total", namespace=e["ns"], model=model,
                  trigger="manual") == 1
    for ip in ready_ips(e).values():
        assert chat_version(ip, model)[:2] == (200, "v1")
