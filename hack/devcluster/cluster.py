"""up / down / status / env of the local cluster, built on layout, pki, components and supervisor."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from . import components, kubeconfig, nodes, pki, prometheus, supervisor
from .layout import HACK_DIR, Layout

ADMIN_USER = "fto-admin"
FAKE_GPU_NODES = int(os.environ.get("FTO_FAKE_GPU_NODES", "4"))
GPUS_PER_NODE = int(os.environ.get("FTO_GPUS_PER_NODE", "8"))


def log(msg: str) -> None:
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


def ensure_binaries(layout: Layout) -> None:
    """Builds whatever binary is missing (a no-op when the cache is warm)."""
    wanted = [layout.binary("ETCD"), layout.binary("KWOK"), layout.binary("MINIO"), layout.binary("HELM")]
    wanted += [layout.binary("KUBERNETES", b) for b in
               ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")]
    if all(p.exists() for p in wanted):
        return
    log("binaries missing from the cache; building them (cold: ~12 min on 2 cores) ...")
    subprocess.run([str(HACK_DIR / "build-tools")], check=True)


def ensure_credentials(layout: Layout) -> None:
    d = layout.pki_dir
    pki.ensure_ca(d)
    # 10.96.0.1 is the `kubernetes` Service's ClusterIP (first of the Service range): a SAN, never dialled.
    pki.issue(d, "apiserver", "kube-apiserver", ip_sans=("127.0.0.1", "10.96.0.1"),  # Service range SAN
              dns_sans=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local"), server=True)
    pki.ensure_service_account_keys(d)
    # kubectl logs: the apiserver calls the process node's kubelet API with this client identity,
    # and checks the node's serving certificate against the CA.
    pki.issue(d, "apiserver-kubelet-client", "kube-apiserver-kubelet-client")
    pki.issue(d, "process-node-kubelet", f"system:node:{nodes.PROCESS_NODE_NAME}", ("system:nodes",),
              ip_sans=(layout.host,), server=True)
    kubeconfig.write_identity(layout, layout.kubeconfig, ADMIN_USER, ("system:masters",))
    for user in ("system:kube-controller-manager", "system:kube-scheduler", prometheus.PROMETHEUS_USER):
        kubeconfig.mint_user(layout, user)
    # kwok writes node and pod status and node leases for the fake nodes it serves.
    kubeconfig.write_identity(layout, layout.kubeconfig_for("kwok"), "fto-kwok", ("system:masters",))


def _client(layout: Layout):
    from kubernetes import config
    return config.new_client_from_config(config_file=str(layout.kubeconfig))


def _create_nodes(layout: Layout) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    core = client.CoreV1Api(_client(layout))
    for node in nodes.fake_gpu_nodes(FAKE_GPU_NODES, GPUS_PER_NODE):
        try:
            core.create_node(node)
        except ApiException as err:
            if err.status != 409:
                raise


def _bootstrap_rbac(layout: Layout) -> None:
    """Cluster-wide RBAC of our own components (Prometheus' pod discovery)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    rbac = client.RbacAuthorizationV1Api(_client(layout))
    for obj in prometheus.rbac_objects():
        create = rbac.create_cluster_role if obj["kind"] == "ClusterRole" else rbac.create_cluster_role_binding
        try:
            create(obj)
        except ApiException as err:
            if err.status != 409:
                raise


def _wait_for(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as err:  # the API may still be settling; report the last error on timeout
            last = err
        time.sleep(0.3)
    raise supervisor.ComponentFailed(f"timed out waiting for {what}" + (f": {last}" if last else ""))


def _cluster_ready(layout: Layout) -> None:
    from kubernetes import client
    api = _client(layout)
    core = client.CoreV1Api(api)
    expected = {f"fto-gpu-{i}" for i in range(FAKE_GPU_NODES)} | {nodes.PROCESS_NODE_NAME}

    def nodes_ready():
        ready = {n.metadata.name for n in core.list_node().items
                 if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))}
        return expected <= ready
    _wait_for("all nodes Ready", nodes_ready)
    # Pods are refused until the namespace's default ServiceAccount exists.
    _wait_for("the default ServiceAccount", lambda: core.read_namespaced_service_account("default", "default"))


def up(layout: Layout | None = None) -> Layout:
    layout = layout or Layout.default()
    t0 = time.monotonic()
    ensure_binaries(layout)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_credentials(layout)
    for comp in components.all_components(layout):
        if comp.missing:
            log(f"{comp.name} skipped: {comp.missing}")
            continue
        pid = supervisor.running_pid(layout, comp.name)
        if pid and supervisor.started_with(layout, comp.name) != comp.argv:
            log(f"{comp.name} restarting: it runs with other flags than this version's")
        elif pid and supervisor.is_healthy(layout, comp):
            log(f"{comp.name} already running (pid {pid})")
            if comp.name == "kube-apiserver":
                _bootstrap_rbac(layout)  # a cluster started by an older version lacks it
            continue
        if pid:
            supervisor.stop(layout, comp.name)
        try:
            proc = supervisor.start(layout, comp)
            supervisor.wait_healthy(layout, comp, proc)
        except supervisor.ComponentFailed as err:
            if not comp.optional:
                raise
            log(f"WARNING: {comp.name} did not start; the cluster works without it: {err}")
            continue
        log(f"{comp.name} healthy (pid {proc.pid})" + (f" at {comp.url}" if comp.url else ""))
        if comp.name == "kube-apiserver":
            _create_nodes(layout)
            _bootstrap_rbac(layout)
    _cluster_ready(layout)
    log(f"up in {time.monotonic() - t0:.1f}s; kubeconfig: {layout.kubeconfig}")
    return layout


def down(layout: Layout | None = None, purge: bool = False) -> None:
    layout = layout or Layout.default()
    for comp in reversed(components.all_components(layout)):
        if supervisor.stop(layout, comp.name):
            log(f"stopped {comp.name}")
    if purge and layout.state_dir.exists():
        shutil.rmtree(layout.state_dir)
        log(f"removed {layout.state_dir}")


def status(layout: Layout | None = None) -> bool:
    layout = layout or Layout.default()
    healthy = True
    for comp in components.all_components(layout):
        if comp.missing:
            print(f"{comp.name:24} {'not installed':20} {comp.missing}")
            continue
        pid = supervisor.running_pid(layout, comp.name)
        ok = bool(pid) and supervisor.is_healthy(layout, comp)
        healthy &= ok
        print(f"{comp.name:24} {'healthy' if ok else 'running, unhealthy' if pid else 'stopped':20} "
              f"{('pid ' + str(pid)) if pid else '':10} {comp.url}".rstrip())
    return healthy


def env_lines(layout: Layout | None = None) -> list[str]:
    layout = layout or Layout.default()
    path = [layout.binary("KUBERNETES", "kubectl").parent, layout.binary("HELM").parent]
    return [
        f"export KUBECONFIG={layout.kubeconfig}",
        f"export PATH={':'.join(str(p) for p in path)}:$PATH",
        f"export AWS_ENDPOINT_URL={layout.s3_endpoint}",
        f"export AWS_ACCESS_KEY_ID={components.MINIO_USER}",
        f"export AWS_SECRET_ACCESS_KEY={components.MINIO_PASSWORD}",
        "export AWS_DEFAULT_REGION=us-east-1",
    ] + ([] if prometheus.component(layout).missing else [f"export PROMETHEUS_URL={layout.prometheus_url}"])
