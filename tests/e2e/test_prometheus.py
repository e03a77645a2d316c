"""The cluster's Prometheus finds annotated pods through the apiserver and scrapes them on loopback."""
from __future__ import annotations

import pytest
import requests

from devcluster import components
from helpers import wait_for

PROCESS_NODE = {"fto.dev/process-node": "true"}
# A pod serving one counter at a non-default path and port, as an application would.
SERVER = ("import http.server, os\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = b'demo_requests_total 7\\n' if self.path == '/custom/metrics' else b''\n"
          "        self.send_response(200 if body else 404); self.end_headers(); self.wfile.write(body)\n"
          "    def log_message(self, *a): pass\n"
          "http.server.HTTPServer((os.environ['POD_IP'], 9400), H).serve_forever()\n")


def pod(name: str, annotations: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name},
                                                              "annotations": annotations},
            "spec": {"nodeSelector": PROCESS_NODE, "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": "python", "command": ["python", "-c", SERVER],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}}


def query(cluster, promql: str) -> list:
    r = requests.get(f"{cluster.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


@pytest.fixture
def prometheus(cluster):
    from devcluster import prometheus as prom
    if prom.component(cluster).missing:
        pytest.skip(prom.MISSING)
    return cluster


def test_annotated_pods_on_the_process_node_are_scraped_and_others_are_not(prometheus, core, namespace):
    cluster = prometheus
    core.create_namespaced_pod(namespace, pod("scraped", {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9400", "prometheus.io/path": "/custom/metrics"}))
    core.create_namespaced_pod(namespace, pod("ignored", {}))
    up = wait_for(lambda: query(cluster, f'up{{namespace="{namespace}"}} == 1'), timeout=90, interval=1,
                  what="the annotated pod's target up in Prometheus")
    labels = up[0]["metric"]
    ip = core.read_namespaced_pod("scraped", namespace).status.pod_ip
    assert labels["pod"] == "scraped" and labels["app"] == "scraped" and labels["instance"] == f"{ip}:9400"
    value = wait_for(lambda: query(cluster, f'demo_requests_total{{namespace="{namespace}"}}'), timeout=30,
                     interval=1, what="the pod's own metric")
    assert value[0]["value"][1] == "7"
    targets = requests.get(f"{cluster.prometheus_url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert not [t for t in targets if t["labels"].get("namespace") == namespace and t["labels"].get("pod") == "ignored"]


def test_prometheus_is_in_the_cluster_env(prometheus):
    from devcluster import cluster as devcluster
    assert f"export PROMETHEUS_URL={prometheus.prometheus_url}" in devcluster.env_lines(prometheus)
    assert components.all_components(prometheus)[-1].url == prometheus.prometheus_url
