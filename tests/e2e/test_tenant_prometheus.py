"""Tenant safety of the Prometheus queries (issue 13, findings 7 and 8), against the real cluster.

A chart release with two tenant namespaces (tenancy.py); the operator runs under the chart's
ServiceAccount; every ModelVersion is written by a tenant identity (team-a editors, a promoter).
Prometheus is played by loopback fakes in this process: one answering HTTP 500 with a
secret-looking body, one answering "success, no data". The serving target is the reference
engine + agent Deployment on the process node in team-a, one pod.

- 7: a prometheusUrl off the admin allow-list is refused at admission (also in the `#` and userinfo
  forms); a query against an allowed server that answers 500 never gets the body into Events,
  status or the operator log, and the query the operator ran carries namespace="<team-a>".
- 8: a rollback query that sees nothing fails closed: after spec.rollback.maxBlindChecks blind
  checks the version is rolled back (trigger blind), even past its nominal bake window (extended
  while blind), or held with condition Blind (onBlind Hold); the repeated warnings are one Event
  whose count grows.
"""
from __future__ import annotations

import copy
import http.server
import json
import threading
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from helpers import wait_for
from inference_adapters import publish
from tenancy import GROUP, PROMOTERS, VERSION, apply, as_user, install_tenancy, operator_under_sa

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-TENANT-PROBE-7d1f9c0e5b"
TOKEN = "e2e-tenant-prometheus-token"
APP = "tp-serving"
QUERY = 'sum(rate(fto_agent_requests_total{model="$model",code=~"5.."}[10s]))'


class FakePrometheus:
    """A loopback HTTP server answering every GET with one fixed status and body; records paths."""

    def __init__(self, status: int, body: bytes):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def fakes():
    leaky = FakePrometheus(500, f"upstream error: aws_secret_access_key={SECRET}\n".encode())
    empty = FakePrometheus(200, json.dumps({"status": "success", "data": {"resultType": "vector",
                                                                          "result": []}}).encode())
    yield {"leaky": leaky, "empty": empty}
    leaky.close()
    empty.close()


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3, fakes):
    yield from install_tenancy(cluster, core, s3, {"prometheus": {"allowedUrls": [fakes["leaky"].url,
                                                                                  fakes["empty"].url]}})


def _deployment() -> tuple[dict, dict]:
    from finetune_trainer.basemodel import models_cache
    docs = list(yaml.safe_load_all((ROOT / "examples" / "inference-deployment-reference.yaml").read_text()))
    secret = copy.deepcopy(next(d for d in docs if d["kind"] == "Secret"))
    secret["stringData"]["token"] = TOKEN
    dep = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    dep["metadata"]["name"] = APP
    dep["spec"]["selector"]["matchLabels"] = dep["spec"]["template"]["metadata"]["labels"] = {"app": APP}
    for c in dep["spec"]["template"]["spec"]["containers"]:
        args = c["args"]
        args[args.index("--max-loras") + 1] = "6"
        for source in c.get("envFrom") or []:
            source["secretRef"]["name"] = "mv-s3"   # the agents read adapters from the cluster's MinIO
        if c["name"] == "engine":
            c["env"].append({"name": "FTO_CACHE_DIR", "value": str(models_cache().parent)})
    return secret, dep


@pytest.fixture(scope="module")
def env(cluster, api, core, s3, tenancy, fakes, tmp_path_factory):
    """team-a serving pod, adapters in the allowed bucket, the operator under the chart's SA."""
    from finetune_trainer.basemodel import prepare_default_model
    from finetune_trainer.model import folder_digest
    from devcluster import components
    ns = tenancy.team_a
    secret, dep = _deployment()
    core.create_namespaced_secret(ns, secret)
    core.create_namespaced_secret(ns, {"metadata": {"name": "mv-s3", "labels": {"finetune.fto.dev/credentials": "true"}},
                                       "stringData": {"AWS_ACCESS_KEY_ID": components.MINIO_USER,
                                                      "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD,
                                                      "AWS_ENDPOINT_URL": cluster.s3_endpoint}})
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, dep)
    base = prepare_default_model()
    digest = folder_digest(base)
    adapters = {m: publish(s3, base, f"s3://{tenancy.bucket}/adapters/{m}", rank=4, seed=i, base_digest=digest)
                for i, m in enumerate(["leak", "nodata", "hold"], start=1)}
    tmp = tmp_path_factory.mktemp("tenant-prometheus")
    mp = pytest.MonkeyPatch()
    mp.setenv("FTO_PROMETHEUS_ALLOWED_URLS", f"{fakes['leaky'].url},{fakes['empty'].url}")
    mp.setenv("FTO_PROMETHEUS_URL", "")
    _, log, proc = operator_under_sa(cluster, core, tenancy, tmp)
    mp.undo()
    admin = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    e = {"ns": ns, "t": tenancy, "core": core, "crds": admin, "adapters": adapters, "log": log, "cluster": cluster}
    try:
        wait_for(lambda: _ready_pods(e), timeout=300, interval=1, what="the serving pod Ready")
        yield e
    finally:
        admin.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, "modelversions")
        proc.terminate()
        proc.wait(timeout=30)
        apps.delete_namespaced_deployment(APP, ns)
        print(f"\noperator log: {log}")


def _ready_pods(e) -> list:
    pods = e["core"].list_namespaced_pod(e["ns"], label_selector=f"app={APP}").items
    return [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def editor(t) -> tuple[str, list]:
    return f"erin-{t.tag}", [f"team-a-{t.tag}"]


def promoter(t) -> tuple[str, list]:
    return f"pat-{t.tag}", [f"team-a-{t.tag}", PROMOTERS]


def version_body(e, model: str, stage: str, **rollback) -> dict:
    a = e["adapters"].get(model) or e["adapters"]["leak"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": f"{model}-v1"},
            "spec": {"model": model, "version": "v1", "stage": stage,
                     "adapter": {"uri": a["adapterUri"] + "/", "digest": a["manifestDigest"]},
                     "baseModel": {"name": "smollm2-135m-instruct"},
                     "credentials": {"secretRef": {"name": "mv-s3"}, "endpoint": e["cluster"].s3_endpoint},
                     "servingTarget": {"selector": {"matchLabels": {"app": APP}}, "port": 8001,
                                       "adminTokenSecretRef": {"name": "adapter-agent-token"}},
                     "rollback": {"query": QUERY, "threshold": 1000, "intervalSeconds": 1, **rollback}}}


def status(e, name: str) -> dict:
    return e["crds"].get_namespaced_custom_object(GROUP, VERSION, e["ns"], "modelversions", name).get("status") or {}


def events_of(e, name: str) -> list:
    return [ev for ev in e["core"].list_namespaced_event(e["ns"]).items if ev.involved_object.name == name]


def wait_phase(e, name: str, phase: str, timeout: float = 240) -> dict:
    def check():
        s = status(e, name)
        return s if s.get("phase") == phase else None
    try:
        return wait_for(check, timeout=timeout, interval=0.5, what=f"{name} phase {phase}")
    except AssertionError:
        print(json.dumps(status(e, name), indent=1)[:4000])
        print(Path(e["log"]).read_text()[-4000:])
        raise


# --- finding 7: the URL allow-list at admission --------------------------------------------------------------------
@pytest.mark.parametrize("behaviour, url", [
    ("a loopback port off the list", "http://127.0.0.1:1"),
    ("an allowed server with a fragment path", "{leaky}/#/../../api/v1/admin/tsdb/delete_series"),
    ("an allowed server behind userinfo", "http://attacker@{leaky_host}"),
    ("a cloud metadata address", "http://169.254.169.254/latest/meta-data"),
])
def test_a_prometheus_url_off_the_allow_list_is_refused_at_admission(env, fakes, behaviour, url):
    t = env["t"]
    url = url.format(leaky=fakes["leaky"].url, leaky_host=fakes["leaky"].url.split("//", 1)[1])
    refused = apply(env["cluster"], env["ns"], version_body(env, "probe", "candidate", prometheusUrl=url), *editor(t))
    assert refused.returncode != 0, f"{behaviour}: admitted"
    assert "allow-list" in refused.stderr or "metadata" in refused.stderr, refused.stderr
    allowed = as_user(env["cluster"], *editor(t), "apply", "--dry-run=server", "-n", env["ns"], "-f", "-",
                      stdin=json.dumps(version_body(env, "probe", "candidate", prometheusUrl=fakes["leaky"].url + "/")))
    assert allowed.returncode == 0, allowed.stderr


# --- finding 7: reflection; finding 8: fail closed ------------------------------------------------------------------
def test_an_error_body_never_reaches_events_status_or_logs_and_the_query_is_scoped(env, fakes):
    t, name = env["t"], "leak-v1"
    body = version_body(env, "leak", "production", prometheusUrl=fakes["leaky"].url, bakeWindowSeconds=600,
                        maxBlindChecks=6)
    created = apply(env["cluster"], env["ns"], body, *promoter(t))
    assert created.returncode == 0, created.stderr
    try:
        wait_for(lambda: len(fakes["leaky"].seen) >= 3, timeout=240, interval=0.5, what="three rollback checks")
    except AssertionError:
        print(json.dumps(status(env, name), indent=1)[:4000])
        raise
    wait_for(lambda: [ev for ev in events_of(env, name) if ev.reason == "AnalysisFailed"], timeout=30,
             what="an AnalysisFailed event")

    def reflected():
        texts = [json.dumps(status(env, name))] + [f"{ev.reason} {ev.message}" for ev in events_of(env, name)] + \
            [Path(env["log"]).read_text()]
        return [x[:300] for x in texts if SECRET in x or "upstream error" in x]
    assert not reflected(), "the server's body was reflected"
    s = wait_phase(env, name, "RolledBack", timeout=60)
    assert not reflected(), "the server's body was reflected"
    failed = [ev for ev in events_of(env, name) if ev.reason == "AnalysisFailed"]
    assert failed and all("Prometheus answered HTTP 500" in ev.message for ev in failed)
    # The query that ran reads team-a only, however the tenant wrote it.
    assert f'namespace%3D%22{env["ns"]}%22' in fakes["leaky"].seen[-1]
    assert s["rollback"]["trigger"] == "blind" and s["rollback"]["blindChecks"] == 6


def test_no_data_past_the_bake_window_rolls_back_and_repeats_fold_into_one_event(env, fakes):
    t, name = env["t"], "nodata-v1"
    # The nominal window (3 s) ends before 6 blind checks at 1 s: only the extension keeps it open.
    body = version_body(env, "nodata", "production", prometheusUrl=fakes["empty"].url, bakeWindowSeconds=3,
                        maxBlindChecks=6, onBlind="Rollback")
    assert apply(env["cluster"], env["ns"], body, *promoter(t)).returncode == 0
    wait_phase(env, name, "Production")
    s = wait_phase(env, name, "RolledBack", timeout=90)
    assert s["rollback"]["trigger"] == "blind" and s["rollback"]["restoredVersion"] == "base"
    assert "no answer or no data" in s["message"]
    no_data = [ev for ev in events_of(env, name) if ev.reason == "AnalysisNoData"]
    assert len(no_data) == 1, [(ev.metadata.name, ev.count) for ev in no_data]
    assert no_data[0].count >= 2 and no_data[0].last_timestamp >= no_data[0].first_timestamp


def test_no_data_with_on_blind_hold_keeps_serving_with_condition_blind(env, fakes):
    t, name = env["t"], "hold-v1"
    body = version_body(env, "hold", "production", prometheusUrl=fakes["empty"].url, bakeWindowSeconds=3,
                        maxBlindChecks=3, onBlind="Hold")
    assert apply(env["cluster"], env["ns"], body, *promoter(t)).returncode == 0

    def held():
        s = status(env, name)
        c = next((c for c in s.get("conditions") or [] if c["type"] == "Blind"), None)
        return s if c and c["status"] == "True" else None
    s = wait_for(held, timeout=240, interval=0.5, what="condition Blind")
    assert s["phase"] == "Production" and s["bakeWindow"]["blindChecks"] >= 3
