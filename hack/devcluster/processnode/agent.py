"""The process node's agent: registers the node, keeps its Lease, and runs the pods bound to it."""
from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from .. import nodes
from . import plan, volumes
from .containerlogs import ContainerLogServer
from .runner import LAUNCHER, HACK_DIR, PodRunner

log = logging.getLogger("process-node")
LEASE_SECONDS = 40
LEASE_RENEW_EVERY = 10
STATUS_EVERY = 30


class IPPool:
    """Loopback pod IPs from a CIDR inside 127.0.0.0/8, handed out round-robin."""

    def __init__(self, cidr: str):
        net = ipaddress.ip_network(cidr)
        if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
            raise ValueError(f"pod CIDR {cidr} must be inside 127.0.0.0/8: nothing may dial off this host")
        self._hosts = [str(h) for h in list(net.hosts())[1:]]  # .1 stays the node's
        self._next, self._used, self._lock = 0, {}, threading.Lock()

    def allocate(self, uid: str) -> str:
        with self._lock:
            if uid in self._used:
                return self._used[uid]
            for _ in range(len(self._hosts)):
                ip = self._hosts[self._next]
                self._next = (self._next + 1) % len(self._hosts)
                if ip not in self._used.values():
                    self._used[uid] = ip
                    return ip
        raise RuntimeError("no free pod IP left")

    def release(self, uid: str) -> None:
        with self._lock:
            self._used.pop(uid, None)

    def reserve(self, uid: str, ip: str) -> None:
        """Mark an IP a pod already holds (found after an agent restart) as taken."""
        with self._lock:
            if ip in self._hosts and ip not in self._used.values():
                self._used[uid] = ip


def _kill_orphan(container_id: str, uid8: str) -> None:
    """SIGKILL the process group of a container the previous agent started, if it still runs
    (checked by its command line naming the pod's directory, so a reused PID is left alone)."""
    if not container_id.startswith("process://"):
        return
    try:
        pid = int(container_id[len("process://"):])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (ValueError, OSError):
        return
    if "devcluster.processnode.launch" in cmdline and f"_{uid8}/" in cmdline:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _utc(fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(fmt)


class Agent:
    def __init__(self, kubeconfig: str, state_dir: Path, pod_cidr: str, apiserver_host: str,
                 apiserver_port: int, health_address: str, node_name: str = nodes.PROCESS_NODE_NAME,
                 kubelet_port: int = 0, kubelet_tls: tuple[Path, Path, Path] | None = None):
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.node_name, self.state_dir = node_name, state_dir
        self.pods_dir = state_dir / "pods"
        self.ips = IPPool(pod_cidr)
        self.host_ip = "127.0.0.1"
        self.apiserver = (apiserver_host, apiserver_port)
        self.health_address = health_address
        # The kubelet API port (only /containerLogs) and its (cert, key, client CA); 0: none.
        self.kubelet_port, self.kubelet_tls = kubelet_port, kubelet_tls
        self.runners: dict[str, PodRunner] = {}
        self.deleted: set[str] = set()  # uids of pods removed from the API
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.registered = threading.Event()

    # --- what runners need ---------------------------------------------------------------------
    def pod_dir(self, pod: dict) -> Path:
        meta = pod["metadata"]
        return self.pods_dir / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"

    def release_storage(self, pod_dir: Path) -> None:
        """A pod removed from the node loses its emptyDirs, home and scratch space, as on a kubelet
        (a trainer pod holds a copy of its base model there); its logs and termination messages stay."""
        for sub in ("volumes", "home", "tmp"):
            shutil.rmtree(pod_dir / sub, ignore_errors=True)

    def base_env(self, pod: dict, pod_ip: str) -> dict:
        host, port = self.apiserver
        pod_dir = self.pod_dir(pod)
        (pod_dir / "tmp").mkdir(parents=True, exist_ok=True)
        return {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(pod_dir / "home"), "TMPDIR": str(pod_dir / "tmp"), "LANG": "C.UTF-8",
            "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": f"tcp://{host}:{port}",
            # Nothing on this node may fetch weights or data from a hub.
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        }

    def lookup(self, kind: str, namespace: str, name: str):
        read = self.core.read_namespaced_secret if kind == "Secret" else self.core.read_namespaced_config_map
        try:
            obj = json.loads(read(name, namespace, _preload_content=False).data)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        obj["kind"] = kind
        return plan.decode_data(obj)

    def mint_token(self, pod: dict, audience: str, seconds: int):
        meta = pod["metadata"]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "audiences": [audience] if audience else None, "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}}
        sa = pod["spec"].get("serviceAccountName") or "default"
        resp = self.core.create_namespaced_service_account_token(sa, meta["namespace"], body)
        return resp.status.token, volumes.expiry_epoch(resp.status.expiration_timestamp)

    def patch_status(self, pod: dict, status: dict) -> bool:
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status},
                                                  _content_type="application/merge-patch+json")
            return True
        except ApiException as err:
            if err.status != 404:
                log.warning("status of %s/%s: %s", meta["namespace"], meta["name"], err.reason)
            return False

    def runner_done(self, runner: PodRunner) -> None:
        with self.lock:
            self.runners.pop(runner.uid, None)
            deleted = runner.uid in self.deleted
        if deleted:
            self.release_storage(self.pod_dir(runner.pod))
        if runner.stopping.is_set() and not self.stopping.is_set():
            self._finalize_delete(runner.pod)

    # --- node ---------------------------------------------------------------------------------
    def register(self) -> None:
        node = nodes.process_node(os.cpu_count() or 2, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        try:
            self.core.create_node(node)
        except ApiException as err:
            if err.status != 409:
                raise
            self.core.patch_node(self.node_name, {"metadata": {"labels": node["metadata"]["labels"]}})
        self._post_node_status(node["status"])
        self._renew_lease()
        self.registered.set()

    def _post_node_status(self, resources: dict | None = None) -> None:
        now = _utc()
        conds = [("Ready", "True", "KubeletReady", "process-node agent is posting ready status"),
                 ("MemoryPressure", "False", "KubeletHasSufficientMemory", ""),
                 ("DiskPressure", "False", "KubeletHasNoDiskPressure", ""),
                 ("PIDPressure", "False", "KubeletHasSufficientPID", "")]
        status = {"conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
                                  "lastTransitionTime": self._transition_times.get(t, now)} for t, s, r, m in conds],
                  "addresses": [{"type": "InternalIP", "address": self.host_ip},
                                {"type": "Hostname", "address": self.node_name}],
                  "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "osImage": "process-node",
                               "kubeletVersion": "process-node", "containerRuntimeVersion": "process://local",
                               "kernelVersion": os.uname().release, "kubeProxyVersion": "", "bootID": "",
                               "machineID": "", "systemUUID": ""}}
        for c in status["conditions"]:
            self._transition_times.setdefault(c["type"], c["lastTransitionTime"])
        if self.kubelet_port:
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.kubelet_port}}
        if resources:
            status.update(resources)
        self.core.patch_node_status(self.node_name, {"status": status})

    _transition_times: dict = {}

    def _renew_lease(self) -> None:
        body = {"metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": _utc("%Y-%m-%dT%H:%M:%S.%fZ")}}
        try:
            self.coord.patch_namespaced_lease(self.node_name, "kube-node-lease", body)
        except ApiException as err:
            if err.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(LEASE_RENEW_EVERY):
            try:
                self._renew_lease()
                if time.monotonic() - last_status >= STATUS_EVERY:
                    self._post_node_status()
                    last_status = time.monotonic()
            except Exception as err:  # keep beating; the apiserver may be restarting
                log.warning("heartbeat: %s", err)

    # --- pods ---------------------------------------------------------------------------------
    def _finalize_delete(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0,
                                            body=client.V1DeleteOptions(grace_period_seconds=0,
                                                                        preconditions={"uid": meta["uid"]}))
        except ApiException as err:
            if err.status not in (404, 409):
                log.warning("delete %s/%s: %s", meta["namespace"], meta["name"], err.reason)

    def reconcile(self, pod: dict, recovering: bool = False) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        phase = (pod.get("status") or {}).get("phase")
        with self.lock:
            runner = self.runners.get(uid)
        if meta.get("deletionTimestamp"):
            if runner:
                runner.request_stop(float(meta.get("deletionGracePeriodSeconds") or 0))
            else:
                self._finalize_delete(pod)
            return
        if runner or phase in ("Succeeded", "Failed"):
            return
        started = any("running" in (cs.get("state") or {}) or cs.get("restartCount")
                      for cs in (pod.get("status") or {}).get("containerStatuses") or [])
        if recovering and (phase == "Running" or started):
            self._fail_lost(pod)
            return
        runner = PodRunner(self, pod)
        with self.lock:
            self.runners[uid] = runner
        runner.start()

    def _release_storage_of_pods_gone(self, pods: list) -> None:
        """Pods deleted while no agent watched: their folders stay (logs), their storage goes."""
        present = {self.pod_dir(p).name for p in pods}
        if self.pods_dir.is_dir():
            for folder in self.pods_dir.iterdir():
                if folder.is_dir() and folder.name not in present:
                    self.release_storage(folder)

    def _fail_lost(self, pod: dict) -> None:
        # The containers ran in their own sessions and may have outlived the old agent: stop them,
        # or they would keep the pod's IP and ports for whoever is given that IP next.
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            _kill_orphan(cs.get("containerID") or "", pod["metadata"]["uid"][:8])
        message = "the process node agent restarted; this pod's processes were lost"
        statuses = [dict(cs, ready=False, state={"terminated": {"exitCode": 137, "reason": "ProcessNodeRestarted",
                                                                "message": message, "finishedAt": _utc()}})
                    for cs in (pod.get("status") or {}).get("containerStatuses") or []]
        self.patch_status(pod, {"phase": "Failed", "reason": "ProcessNodeRestarted", "message": message,
                                "containerStatuses": statuses})

    def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        first = True
        while not self.stopping.is_set():
            try:
                listing = json.loads(self.core.list_pod_for_all_namespaces(field_selector=selector,
                                                                          _preload_content=False).data)
                if first:
                    self._release_storage_of_pods_gone(listing["items"])
                    for pod in listing["items"]:
                        ip = (pod.get("status") or {}).get("podIP")
                        if ip and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                            self.ips.reserve(pod["metadata"]["uid"], ip)
                for pod in listing["items"]:
                    self.reconcile(pod, recovering=first)
                first = False
                stream = watch.Watch().stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                              resource_version=listing["metadata"]["resourceVersion"],
                                              timeout_seconds=120)
                for event in stream:
                    if self.stopping.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.reconcile(event["raw_object"])
                    elif event["type"] == "DELETED":
                        gone = event["raw_object"]
                        with self.lock:
                            runner = self.runners.get(gone["metadata"]["uid"])
                            self.deleted.add(gone["metadata"]["uid"])
                        if runner:
                            runner.request_stop(0)  # its storage goes when its processes have exited
                        else:
                            self.release_storage(self.pod_dir(gone))
            except Exception as err:  # relist after any error, e.g. 410 Gone or a restarting apiserver
                if not self.stopping.is_set():
                    log.warning("pod watch: %s; relisting", err)
                    time.sleep(1)

    # --- process ------------------------------------------------------------------------------
    def _serve_health(self) -> None:
        agent = self

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                ok = agent.registered.is_set() and not agent.stopping.is_set()
                self.send_response(200 if ok else 503)
                self.end_headers()
                self.wfile.write(b"ok" if ok else b"starting")

            def log_message(self, *args):
                pass

        host, port = self.health_address.rsplit(":", 1)
        server = http.server.ThreadingHTTPServer((host, int(port)), Health)
        threading.Thread(target=server.serve_forever, daemon=True, name="health").start()

    def _serve_container_logs(self) -> None:
        if not (self.kubelet_port and self.kubelet_tls):
            return
        cert, key, ca = self.kubelet_tls
        ContainerLogServer((self.host_ip, self.kubelet_port), self.pods_dir, cert, key, ca,
                           self.container_running, self.stopping).serve_in_background()

    def container_running(self, namespace: str, pod: str, container: str) -> bool:
        """Whether the container may still write to its log (running, or waiting to restart)."""
        with self.lock:
            runners = list(self.runners.values())
        for r in runners:
            meta = r.pod["metadata"]
            if (meta["namespace"], meta["name"]) == (namespace, pod):
                return any(c.name == container and c.state != "terminated" for c in r.init + r.main)
        return False

    def shutdown(self, *_):
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("shutting down: stopping %d pods", len(self.runners))
        with self.lock:
            runners = list(self.runners.values())
        for r in runners:
            r.request_stop(min(r.grace, 5.0))
        for r in runners:
            r.join(timeout=8)
        for r in runners:
            r._fail_all("the process node shut down", "NodeShutdown")

    def run(self) -> None:
        os.environ["FTO_PROCESS_NODE_STATE"] = str(self.state_dir.resolve())
        check_mount_namespaces()
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self.shutdown)
        signal.signal(signal.SIGINT, self.shutdown)
        self._serve_health()
        self._serve_container_logs()
        self.register()
        threading.Thread(target=self._heartbeat, daemon=True, name="heartbeat").start()
        watcher = threading.Thread(target=self._watch_pods, daemon=True, name="watch")
        watcher.start()
        log.info("process node %s ready", self.node_name)
        while not self.stopping.wait(1):
            pass


def check_mount_namespaces() -> None:
    """Containers need private mount namespaces; refuse to start (clearly) where there are none."""
    probe = subprocess.run(LAUNCHER + ["--probe"], capture_output=True, text=True,
                           env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": HACK_DIR})
    if probe.returncode != 0:
        raise SystemExit("process-node: cannot create mount namespaces here (needs root or CAP_SYS_ADMIN): "
                         + (probe.stderr.strip() or probe.stdout.strip()))
