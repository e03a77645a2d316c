"""The cluster's static configuration: loopback only, pinned versions, fake GPU node shape."""
import ipaddress
import re

import pytest

from devcluster import components, nodes
from devcluster.layout import Layout, Ports, read_versions
from devcluster.processnode.agent import IPPool

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def layout(tmp_path):
    return Layout(state_dir=tmp_path, bin_dir=tmp_path / "bin", versions=read_versions(), ports=Ports())


def test_every_version_is_pinned():
    versions = read_versions()
    assert set(versions) >= {"KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION", "MINIO_VERSION"}
    for key, value in versions.items():
        assert re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9a-z.-]+)?", value), f"{key}={value} is not a pinned version"


def test_every_component_listens_and_dials_on_loopback_only(tmp_path):
    service_net = components.SERVICE_CIDR.split("/")[0]
    for comp in components.all_components(layout(tmp_path)):
        text = " ".join(comp.argv + [comp.health_url])
        for ip in re.findall(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", text):
            if comp.name == "kube-apiserver" and ip == service_net:
                continue  # ClusterIPs are allocated from it, never dialled
            assert ipaddress.ip_address(ip) in LOOPBACK, f"{comp.name} uses {ip}, outside loopback"


def test_pod_cidrs_are_loopback():
    for cidr in (components.KWOK_POD_CIDR, components.PROCESS_NODE_POD_CIDR):
        assert ipaddress.ip_network(cidr).subnet_of(LOOPBACK)


def test_ip_pool_refuses_non_loopback_and_reuses_released_addresses():
    with pytest.raises(ValueError, match="inside 127.0.0.0/8"):
        IPPool("10.0.0.0/24")  # refused: not loopback
    pool = IPPool("127.9.0.0/30")  # hosts .1 (node) and .2
    ip = pool.allocate("a")
    assert ip == "127.9.0.2" and pool.allocate("a") == ip
    with pytest.raises(RuntimeError):
        pool.allocate("b")
    pool.release("a")
    assert pool.allocate("b") == ip


def test_ips_held_by_pods_from_before_an_agent_restart_are_not_handed_out_again():
    pool = IPPool("127.9.0.0/29")  # hosts .2 to .6 for pods
    pool.reserve("old", "127.9.0.2")
    assert pool.allocate("new") == "127.9.0.3"
    assert pool.allocate("old") == "127.9.0.2"  # the old pod keeps its own address


def test_fake_gpu_nodes_are_tainted_and_advertise_gpus():
    fleet = nodes.fake_gpu_nodes(4, 8)
    assert [n["metadata"]["name"] for n in fleet] == ["fto-gpu-0", "fto-gpu-1", "fto-gpu-2", "fto-gpu-3"]
    for node in fleet:
        assert node["spec"]["taints"] == [nodes.GPU_TAINT]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_process_node_is_not_managed_by_kwok():
    node = nodes.process_node(2, 8 << 30)
    assert "kwok.x-k8s.io/node" not in (node["metadata"].get("annotations") or {})
    assert node["metadata"]["labels"][nodes.PROCESS_NODE_LABEL] == "true"


def test_port_base_shifts_all_ports(monkeypatch):
    monkeypatch.setenv("FTO_PORT_BASE", "22000")
    assert Ports.from_env().apiserver == Ports().apiserver + 10000


def test_port_base_that_reaches_the_ephemeral_range_is_refused(monkeypatch):
    monkeypatch.setenv("FTO_PORT_BASE", "42000")
    with pytest.raises(ValueError, match="pick a base from 2000 to 25000"):
        Ports.from_env()


def test_every_port_is_distinct_and_the_process_node_serves_logs_to_the_apiserver(tmp_path):
    ports = [getattr(Ports(), name) for name in Ports.__dataclass_fields__]
    assert len(set(ports)) == len(ports)
    by_name = {c.name: c.argv for c in components.all_components(layout(tmp_path))}
    assert f"--kubelet-port={Ports().process_node_kubelet}" in by_name["process-node"]
    apiserver = " ".join(by_name["kube-apiserver"])
    assert "--kubelet-client-certificate=" in apiserver and "--kubelet-preferred-address-types=InternalIP" in apiserver
