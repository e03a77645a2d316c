"""One tenant cannot stall everyone: a tarpit in one namespace leaves another's latency alone.

A tenant of team A (a user bound to `edit` in its own namespace, through the chart's admission
policies) points several ModelVersions at an S3 endpoint it controls: a loopback server, a thread
of this test, that answers one byte every few seconds, slowly enough to hold a connection for
minutes and fast enough that no per-read socket timeout ever trips. Team B meanwhile has a
production ModelVersion in its bake window (fake adapter agents on kwok pods, a fake Prometheus
that records when it is asked) and creates FineTuneJobs.

Measured in the same test, first on the idle cluster, then under the attack: how long team B's new
job waits for its first status, and how often team B's bake-window query runs. Both must stay
within 2x of idle (plus one second of slack for the shared 2-core machine). Before the fix the
tarpit held every reconcile worker (a read timeout never trips on a dripping server, and nothing
kept one namespace from taking all workers), so team B's job had no status for minutes and the
bake-window checks stopped.
"""
from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client, config

from fakejobs import BASE_DIGEST, KWOK_SETTINGS, upload_result
from helpers import wait_for
from tenancy import GROUP, PROMOTERS, VERSION, apply, install_tenancy, job, operator_under_sa, stop_operator

DRIP_SECONDS = 3.0
ATTACKERS = 6
AGENT_PORT_HINT = 18001
BAKE_INTERVAL = 2


# --- loopback servers the test runs -------------------------------------------------------------------------
class Tarpit:
    """Accepts every connection, reads the request, then sends an HTTP answer one byte per DRIP_SECONDS."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.open = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with self._lock:
            self.connections += 1
            self.open += 1
        try:
            with conn:
                conn.recv(65536)
                for b in b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n":
                    conn.sendall(bytes([b]))
                    time.sleep(DRIP_SECONDS)
        except OSError:
            pass
        finally:
            with self._lock:
                self.open -= 1

    def close(self):
        self.sock.close()


class FakePrometheus:
    """Answers every instant query with 0 (no breach) and records when it was asked."""

    def __init__(self):
        asked = self.asked = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/api/v1/query"):
                    asked.append(time.monotonic())
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {}, "value": [time.time(), "0"]}]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class FakeAgent:
    """The adapter agent's admin API (state, preload, flip, weights, unload) in memory, on a pod's IP."""

    def __init__(self, ip: str):
        from finetune_api.naming import served_name
        state = self.state = {"adapters": set(), "aliases": {}}

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, doc):
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer({"engine": {"ready": True, "maxLoraRank": 64, "maxLoras": 4,
                                         "targetModules": ["q_proj", "v_proj"]},
                              "baseModel": {"name": "smollm2-135m-instruct", "digest": BASE_DIGEST},
                              "adapters": [{"name": n, "loaded": True} for n in sorted(state["adapters"])],
                              "aliases": {m: [{"name": n, "weight": w} for n, w in sorted(ws.items())]
                                          for m, ws in state["aliases"].items()}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/admin/preload":
                    name = served_name(body["model"], body["version"], body["manifestDigest"])
                    state["adapters"].add(name)
                    return self._answer({"name": name, "alreadyLoaded": False, "seconds": 0.01})
                if self.path == "/admin/flip":
                    state["aliases"][body["model"]] = {body["name"]: 100}
                elif self.path == "/admin/weights":
                    state["aliases"][body["model"]] = dict(body["weights"])
                elif self.path == "/admin/unload":
                    state["adapters"].discard(body["name"])
                self._answer({"ok": True})

            def log_message(self, *args):
                pass

        self.server = None
        for port in range(AGENT_PORT_HINT, AGENT_PORT_HINT + 50):
            try:
                self.server = ThreadingHTTPServer((ip, port), Handler)
                break
            except OSError:
                continue
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


# --- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tarpit():
    t = Tarpit()
    yield t
    t.close()


@pytest.fixture(scope="module")
def tenancy(cluster, crds, core, s3, tarpit):
    # The platform team allowed a tenant-run S3 endpoint (a gateway team A operates): that is the
    # tarpit. No inference example: this test serves through fake agents.
    yield from install_tenancy(cluster, core, s3, {
        "inferenceExample": {"enabled": False},
        "s3AllowList": {"endpoints": [cluster.s3_endpoint, tarpit.url]}})


@pytest.fixture(scope="module")
def prom():
    p = FakePrometheus()
    yield p
    p.close()


def admin_custom(cluster):
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def opt_in_secrets(core, tenancy):
    for ns in (tenancy.team_a, tenancy.team_b):
        core.patch_namespaced_secret("s3-credentials", ns,
                                     {"metadata": {"labels": {"finetune.fto.dev/credentials": "true"}}})


def serving_pod(core, ns: str) -> str:
    """A pod on a kwok node (Running and Ready at once, with a loopback IP); returns its IP."""
    core.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="bake-serving-0", labels={"app": "bake-b"}),
        spec=client.V1PodSpec(node_selector={"type": "kwok"},
                              tolerations=[client.V1Toleration(key="nvidia.com/gpu", operator="Exists")],
                              containers=[client.V1Container(name="engine", image="fake/engine:1")])))
    return wait_for(lambda: core.read_namespaced_pod("bake-serving-0", ns).status.pod_ip, timeout=60,
                    what="the serving pod's IP")


def production_version(cluster, s3, tenancy, agent_port: int) -> dict:
    result = upload_result(s3, tenancy.bucket, "bake")
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": "bake-v1"},
            "spec": {"model": "bake", "version": "v1", "stage": "production",
                     "adapter": {"uri": result["adapterUri"] + "/", "digest": result["adapterDigest"]},
                     "baseModel": {"name": "smollm2-135m-instruct", "digest": BASE_DIGEST},
                     "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
                     "servingTarget": {"selector": {"matchLabels": {"app": "bake-b"}}, "port": agent_port},
                     "rollback": {"query": "up", "threshold": 0.5, "comparison": "GreaterThan",
                                  "intervalSeconds": BAKE_INTERVAL, "bakeWindowSeconds": 3600,
                                  "maxBlindChecks": 1000, "onBlind": "Hold"}}}


def tarpit_version(tenancy, tarpit, i: int) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": f"slow-{i}"},
            "spec": {"model": "slow", "version": f"t{i}", "stage": "candidate",
                     "adapter": {"uri": f"s3://{tenancy.a_bucket}/slow-{i}/adapter/", "digest": "sha256:" + "0" * 64},
                     "baseModel": {"name": "smollm2-135m-instruct", "digest": BASE_DIGEST},
                     "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": tarpit.url}}}


# --- measurements --------------------------------------------------------------------------------------------
def job_latency(cluster, custom, tenancy, name: str) -> float:
    """Seconds from a team B member creating a job to the operator's first status on it."""
    ns, user = tenancy.team_b, (f"bob-{tenancy.tag}", [f"team-b-{tenancy.tag}"])
    started = time.monotonic()
    created = apply(cluster, ns, job(cluster, name, tenancy.bucket), *user)
    assert created.returncode == 0, created.stderr
    wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs", name).get("status")
                      or {}).get("observedGeneration"), timeout=120, interval=0.1, what=f"a first status on {name}")
    return time.monotonic() - started


def bake_cadence(prom, seconds: float) -> float:
    """The mean seconds between bake-window queries over a window of `seconds` (inf: fewer than 2)."""
    start = len(prom.asked)
    time.sleep(seconds)
    asked = prom.asked[start:]
    return statistics.mean(b - a for a, b in zip(asked, asked[1:])) if len(asked) >= 2 else float("inf")


def test_a_tarpit_in_one_namespace_leaves_another_namespaces_latency_within_twice_idle(
        cluster, core, s3, tenancy, tarpit, prom, tmp_path, monkeypatch):
    custom = admin_custom(cluster)
    opt_in_secrets(core, tenancy)
    ip = serving_pod(core, tenancy.team_b)
    agent = FakeAgent(ip)
    for key, value in {**KWOK_SETTINGS, "FTO_PROMETHEUS_URL": prom.url}.items():
        monkeypatch.setenv(key, value)
    _, log, proc = operator_under_sa(cluster, core, tenancy, tmp_path,
                                     namespaces=[tenancy.team_a, tenancy.team_b, tenancy.system])
    try:
        promoter = (f"pat-{tenancy.tag}", [f"team-b-{tenancy.tag}", PROMOTERS])
        made = apply(cluster, tenancy.team_b, production_version(cluster, s3, tenancy, agent.port), *promoter)
        assert made.returncode == 0, made.stderr
        wait_for(lambda: len(prom.asked) >= 3, timeout=120, interval=0.5,
                 what="the production version's bake-window queries (promoted on the fake agent)")

        idle_jobs = [job_latency(cluster, custom, tenancy, f"idle-{i}") for i in range(3)]
        idle_cadence = bake_cadence(prom, 5 * BAKE_INTERVAL)

        mallory = (f"mallory-{tenancy.tag}", [f"team-a-{tenancy.tag}"])
        for i in range(ATTACKERS):
            done = apply(cluster, tenancy.team_a, tarpit_version(tenancy, tarpit, i), *mallory)
            assert done.returncode == 0, done.stderr
        wait_for(lambda: tarpit.open >= 2, timeout=60, interval=0.2, what="the operator caught in the tarpit")

        attacked_jobs = [job_latency(cluster, custom, tenancy, f"attacked-{i}") for i in range(3)]
        attacked_cadence = bake_cadence(prom, 5 * BAKE_INTERVAL)
        print(f"\njob first-status seconds idle {[round(s, 2) for s in idle_jobs]} attacked "
              f"{[round(s, 2) for s in attacked_jobs]}; bake-window query every {idle_cadence:.2f} s idle, "
              f"{attacked_cadence:.2f} s attacked; tarpit connections {tarpit.connections} ({tarpit.open} open)")
        assert tarpit.connections >= ATTACKERS // 2, "the attack must really have reached the tarpit"
        assert max(attacked_jobs) <= 2 * max(idle_jobs) + 1.0, (idle_jobs, attacked_jobs)
        assert attacked_cadence <= 2 * idle_cadence + 1.0, (idle_cadence, attacked_cadence)
    finally:
        stop_operator(cluster, proc, [tenancy.team_a, tenancy.team_b])
        agent.close()
