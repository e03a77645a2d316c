"""The cluster's Prometheus: Debian's `prometheus` binary discovering pods through our apiserver.

Debian builds prometheus without kubernetes_sd_configs, so discovery goes through
``devcluster.podsd`` (component prometheus-sd), which lists pods with the identity below and
serves them over http_sd_configs with kubernetes_sd's meta labels.

It scrapes every pod annotated the usual way, at the pod's IP (loopback on the process node):

    prometheus.io/scrape: "true"      required
    prometheus.io/port: "8000"        required (the pod IP alone says nothing about the port)
    prometheus.io/path: /metrics      optional

Discovery authenticates with the client certificate of the identity PROMETHEUS_USER, which
bootstrap RBAC (``rbac_objects``) lets list and watch pods in every namespace, and nothing else.
Everything here is pure: the supervisor writes ``files``.
"""
from __future__ import annotations

import shutil
import sys

import yaml

from .components import Component
from .layout import Layout

PROMETHEUS_USER = "fto-prometheus"
CLUSTER_ROLE = "fto:prometheus"
SCRAPE_INTERVAL = "1s"   # bake windows and rollback queries on the local cluster work in seconds
MISSING = "the prometheus binary is not installed (hack/setup installs Debian's prometheus package)"


def config_path(layout: Layout):
    return layout.state_dir / "prometheus" / "prometheus.yml"


def sd_url(layout: Layout) -> str:
    return f"http://{layout.host}:{layout.ports.prometheus_sd}"


def render_config(layout: Layout) -> dict:
    """prometheus.yml: one job that keeps annotated, running pods and scrapes <podIP>:<port><path>."""
    ann = "__meta_kubernetes_pod_annotation_prometheus_io_"
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "kubernetes-pods",
            "http_sd_configs": [{"url": f"{sd_url(layout)}/targets", "refresh_interval": "1s"}],
            "relabel_configs": [
                {"source_labels": [ann + "scrape"], "regex": "true", "action": "keep"},
                {"source_labels": [ann + "port"], "regex": r"\d+", "action": "keep"},
                # Finished pods keep their IP in status; a new pod may hold it by now.
                {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Pending|Succeeded|Failed",
                 "action": "drop"},
                {"source_labels": ["__meta_kubernetes_pod_ip", ann + "port"], "regex": r"(.+);(\d+)",
                 "replacement": "$1:$2", "target_label": "__address__"},
                {"source_labels": [ann + "path"], "regex": "(.+)", "target_label": "__metrics_path__"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
                # Pod labels become target labels (app="...", ...), as in the common community config.
                {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
            ],
        }],
    }


def rbac_objects() -> list[dict]:
    """A ClusterRole that lists and watches pods, bound to PROMETHEUS_USER."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": CLUSTER_ROLE},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PROMETHEUS_USER}]}
    return [role, binding]


def discovery(layout: Layout, binary: str | None = None) -> Component:
    """The pod discovery Prometheus polls; only worth running where Prometheus runs."""
    binary = binary or shutil.which("prometheus")
    return Component("prometheus-sd", [
        sys.executable, "-m", "devcluster.podsd",
        f"--kubeconfig={layout.kubeconfig_for(PROMETHEUS_USER)}",
        f"--address={layout.host}:{layout.ports.prometheus_sd}",
    ], f"{sd_url(layout)}/healthz", optional=True, missing="" if binary else MISSING)


def component(layout: Layout, binary: str | None = None) -> Component:
    binary = binary or shutil.which("prometheus")
    p, h = layout.ports, layout.host
    data = layout.state_dir / "prometheus"
    return Component("prometheus", [
        binary or "prometheus",
        f"--config.file={config_path(layout)}",
        f"--storage.tsdb.path={data / 'data'}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address={h}:{p.prometheus}",
        f"--web.external-url={layout.prometheus_url}",
        "--log.level=warn",
    ], f"{layout.prometheus_url}/-/ready",
        files={str(config_path(layout)): yaml.safe_dump(render_config(layout), sort_keys=False)},
        optional=True, missing="" if binary else MISSING, url=layout.prometheus_url)
