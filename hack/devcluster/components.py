"""Command lines of the cluster's components: pure functions of the Layout, no I/O.

Each returns a Component: the argv to run, the environment it adds, and the URL whose
answer says it is healthy. The supervisor starts them in the order of ``all_components``.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from .layout import Layout

# Service ClusterIPs are allocated from here. Nothing ever dials a ClusterIP in this project
# (pods are reached by their loopback pod IPs), but the apiserver needs a range to allocate from.
SERVICE_CIDR = "10.96.0.0/16"
# Pod IPs handed out by kwok to pods on the fake GPU nodes: inside loopback, never dialled off-host.
KWOK_POD_CIDR = "127.1.0.0/16"
PROCESS_NODE_POD_CIDR = "127.2.0.0/16"
KWOK_CONFIG = Path(__file__).with_name("kwok.yaml")
MINIO_USER = "fto-minio-admin"
MINIO_PASSWORD = "fto-minio-secret-key"


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    health_url: str
    env: dict = dataclasses.field(default_factory=dict)
    # True when health_url is served over TLS by a certificate our CA did not sign.
    insecure_health: bool = False
    # Files (path -> text) the supervisor writes before starting it, e.g. its config.
    files: dict = dataclasses.field(default_factory=dict)
    # Optional components (Prometheus) never fail the cluster: `up` warns and goes on.
    optional: bool = False
    # Why it cannot run here (e.g. its binary is not installed); empty when it can.
    missing: str = ""
    # The address users reach it at, shown by `hack/cluster status`.
    url: str = ""


def etcd(layout: Layout) -> Component:
    p, h = layout.ports, layout.host
    return Component("etcd", [
        str(layout.binary("ETCD")),
        "--name=fto-dev",
        f"--data-dir={layout.state_dir / 'etcd'}",
        f"--listen-client-urls=http://{h}:{p.etcd_client}",
        f"--advertise-client-urls=http://{h}:{p.etcd_client}",
        f"--listen-peer-urls=http://{h}:{p.etcd_peer}",
        f"--initial-advertise-peer-urls=http://{h}:{p.etcd_peer}",
        f"--initial-cluster=fto-dev=http://{h}:{p.etcd_peer}",
        # A throwaway dev store: skipping fsync makes the apiserver several times faster here.
        "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ], f"http://{h}:{p.etcd_client}/health")


def kube_apiserver(layout: Layout) -> Component:
    pki, p, h = layout.pki_dir, layout.ports, layout.host
    return Component("kube-apiserver", [
        str(layout.binary("KUBERNETES", "kube-apiserver")),
        f"--etcd-servers=http://{h}:{p.etcd_client}",
        f"--bind-address={h}", f"--advertise-address={h}", f"--secure-port={p.apiserver}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=true",  # only /healthz, /readyz, /livez and /version are open to it (RBAC)
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Endpoints may not hold loopback addresses, and ours is loopback: no `kubernetes`
        # Service endpoints; in-cluster clients get KUBERNETES_SERVICE_HOST from the process node.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=false",
        "--enable-admission-plugins=NodeRestriction",
        # pods/log: dial the node's InternalIP (node names do not resolve here) with a client cert.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        f"--cert-dir={layout.state_dir / 'apiserver-certs'}",
        "--profiling=false",
        "--v=1",
    ], f"https://{h}:{p.apiserver}/readyz")


def kube_controller_manager(layout: Layout) -> Component:
    pki, p, h = layout.pki_dir, layout.ports, layout.host
    kc = str(layout.kubeconfig_for("system_kube-controller-manager"))
    return Component("kube-controller-manager", [
        str(layout.binary("KUBERNETES", "kube-controller-manager")),
        f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        f"--bind-address={h}", f"--secure-port={p.controller_manager}",
        f"--cert-dir={layout.state_dir / 'kcm-certs'}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        # Lets the CSR API sign client certificates for users, as a real cluster's would.
        f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--allocate-node-cidrs=false",
        "--controllers=*",
        "--v=1",
    ], f"https://{h}:{p.controller_manager}/healthz", insecure_health=True)


def kube_scheduler(layout: Layout) -> Component:
    p, h = layout.ports, layout.host
    kc = str(layout.kubeconfig_for("system_kube-scheduler"))
    return Component("kube-scheduler", [
        str(layout.binary("KUBERNETES", "kube-scheduler")),
        f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        f"--bind-address={h}", f"--secure-port={p.scheduler}",
        f"--cert-dir={layout.state_dir / 'scheduler-certs'}",
        "--leader-elect=false",
        "--v=1",
    ], f"https://{h}:{p.scheduler}/healthz", insecure_health=True)


def kwok(layout: Layout) -> Component:
    p, h = layout.ports, layout.host
    return Component("kwok", [
        str(layout.binary("KWOK")),
        f"--kubeconfig={layout.kubeconfig_for('kwok')}",
        f"--config={KWOK_CONFIG}",
        # Only nodes we mark as fake: the process node is served by our own agent.
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={KWOK_POD_CIDR}",
        f"--node-ip={h}",
        f"--server-address={h}:{p.kwok}",
        "--node-lease-duration-seconds=40",
    ], f"http://{h}:{p.kwok}/healthz")


def minio(layout: Layout) -> Component:
    p, h = layout.ports, layout.host
    return Component("minio", [
        str(layout.binary("MINIO")), "server", str(layout.state_dir / "minio"),
        f"--address={h}:{p.minio}", f"--console-address={h}:{p.minio_console}", "--quiet",
    ], f"http://{h}:{p.minio}/minio/health/live", url=layout.s3_endpoint,
        env={"MINIO_ROOT_USER": MINIO_USER, "MINIO_ROOT_PASSWORD": MINIO_PASSWORD,
             "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CI_CD": "1"})


def process_node(layout: Layout) -> Component:
    p, h = layout.ports, layout.host
    return Component("process-node", [
        sys.executable, "-m", "devcluster.processnode",
        f"--kubeconfig={layout.kubeconfig}",
        f"--state-dir={layout.state_dir / 'process-node'}",
        f"--pod-cidr={layout.process_node_pod_cidr}",
        f"--apiserver-host={h}", f"--apiserver-port={p.apiserver}",
        f"--health-address={h}:{p.process_node}",
        f"--kubelet-port={p.process_node_kubelet}",
        f"--kubelet-cert={layout.pki_dir / 'process-node-kubelet.crt'}",
        f"--kubelet-key={layout.pki_dir / 'process-node-kubelet.key'}",
        f"--kubelet-client-ca={layout.pki_dir / 'ca.crt'}",
    ], f"http://{h}:{p.process_node}/healthz")


def all_components(layout: Layout) -> list[Component]:
    """In start order: each needs the ones before it."""
    from . import prometheus  # it builds on Component
    return [etcd(layout), kube_apiserver(layout), kube_controller_manager(layout),
            kube_scheduler(layout), kwok(layout), minio(layout), process_node(layout),
            prometheus.discovery(layout), prometheus.component(layout)]
