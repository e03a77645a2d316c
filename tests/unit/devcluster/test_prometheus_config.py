"""The local cluster's Prometheus: its config, its discovery's targets, its RBAC (pure, no cluster)."""
import ipaddress
import re

import yaml

from devcluster import components, podsd, prometheus
from devcluster.layout import Layout, Ports, read_versions

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def layout(tmp_path, ports=Ports()):
    return Layout(state_dir=tmp_path, bin_dir=tmp_path / "bin", versions=read_versions(), ports=ports)


def api_pod(name="agent-0", ip="127.2.0.7", phase="Running", annotations=None, labels=None):
    return {"metadata": {"name": name, "namespace": "fto-demo", "labels": labels or {"app": "support-bot"},
                         "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"}
                         if annotations is None else annotations},
            "spec": {"nodeName": "fto-process-node"}, "status": {"podIP": ip, "phase": phase}}


def test_scrapes_every_second_through_pod_discovery_on_loopback(tmp_path):
    cfg = prometheus.render_config(layout(tmp_path))
    assert cfg["global"]["scrape_interval"] == "1s"
    job = cfg["scrape_configs"][0]
    url = job["http_sd_configs"][0]["url"]
    assert url == f"http://127.0.0.1:{Ports().prometheus_sd}/targets"
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg  # what the supervisor writes reads back the same


def test_port_base_moves_prometheus_and_its_discovery(tmp_path, monkeypatch):
    monkeypatch.setenv("FTO_PORT_BASE", "20000")
    shifted = layout(tmp_path, Ports.from_env())
    assert shifted.prometheus_url == "http://127.0.0.1:27090"
    assert "127.0.0.1:27091" in prometheus.render_config(shifted)["scrape_configs"][0]["http_sd_configs"][0]["url"]


def relabel(cfg: dict, labels: dict) -> dict | None:
    """Prometheus' relabelling of one discovered target (keep/drop/replace/labelmap as the config uses them)."""
    labels = dict(labels)
    for rule in cfg["scrape_configs"][0]["relabel_configs"]:
        action = rule.get("action", "replace")
        if action == "labelmap":
            for k, v in list(labels.items()):
                m = re.fullmatch(rule["regex"], k)
                if m:
                    labels[m.group(1)] = v
            continue
        value = ";".join(labels.get(s, "") for s in rule["source_labels"])
        m = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and not m or action == "drop" and m:
            return None
        if action == "replace" and m:
            labels[rule["target_label"]] = m.expand(rule.get("replacement", "$1").replace("$", "\\"))
    return {k: v for k, v in labels.items() if not k.startswith("__meta_")}


def target(pod: dict, cfg: dict) -> dict | None:
    groups = podsd.targets([pod])
    if not groups:
        return None
    return relabel(cfg, {"__address__": groups[0]["targets"][0], "__metrics_path__": "/metrics",
                         **groups[0]["labels"]})


def test_annotated_pod_is_scraped_at_its_ip_port_and_path(tmp_path):
    cfg = prometheus.render_config(layout(tmp_path))
    t = target(api_pod(), cfg)
    assert t["__address__"] == "127.2.0.7:8000" and t["__metrics_path__"] == "/metrics"
    assert (t["namespace"], t["pod"], t["app"], t["node"]) == ("fto-demo", "agent-0", "support-bot", "fto-process-node")
    custom = target(api_pod(annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9400",
                                         "prometheus.io/path": "/custom"}), cfg)
    assert custom["__address__"] == "127.2.0.7:9400" and custom["__metrics_path__"] == "/custom"


def test_pods_not_asking_or_not_running_are_not_scraped(tmp_path):
    cfg = prometheus.render_config(layout(tmp_path))
    assert target(api_pod(annotations={}), cfg) is None
    assert target(api_pod(annotations={"prometheus.io/scrape": "false", "prometheus.io/port": "8000"}), cfg) is None
    assert target(api_pod(annotations={"prometheus.io/scrape": "true"}), cfg) is None  # no port: nothing to dial
    assert target(api_pod(ip=None), cfg) is None
    for phase in ("Pending", "Succeeded", "Failed"):
        assert target(api_pod(phase=phase), cfg) is None


def test_discovery_sanitises_label_names_and_sorts():
    groups = podsd.targets([api_pod("b", labels={"app.kubernetes.io/name": "x"}), api_pod("a", ip="127.2.0.8")])
    assert [g["labels"]["__meta_kubernetes_pod_name"] for g in groups] == ["a", "b"]
    assert groups[1]["labels"]["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == "x"


def test_rbac_lets_the_prometheus_identity_read_pods_and_nothing_else():
    role, binding = prometheus.rbac_objects()
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                    "name": prometheus.PROMETHEUS_USER}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_missing_binary_is_reported_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(prometheus.shutil, "which", lambda name: None)
    comps = {c.name: c for c in components.all_components(layout(tmp_path))}
    assert comps["prometheus"].optional and "hack/setup installs" in comps["prometheus"].missing
    assert comps["prometheus-sd"].missing and not comps["etcd"].optional
    present = prometheus.component(layout(tmp_path), binary="/usr/bin/prometheus")
    assert not present.missing and present.argv[0] == "/usr/bin/prometheus"
    listen = next(a for a in present.argv if a.startswith("--web.listen-address="))
    assert ipaddress.ip_address(listen.split("=")[1].split(":")[0]) in LOOPBACK
    assert str(prometheus.config_path(layout(tmp_path))) in present.files
