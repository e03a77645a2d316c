"""The process node runs real processes with real pod semantics: IPs, probes, in-cluster identity."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from kubernetes import client

from devcluster import nodes
from helpers import job_finished, job_manifest, kubectl, only_pod, wait_for

PROCESS_NODE = {nodes.PROCESS_NODE_LABEL: "true"}


def test_each_pod_gets_its_own_loopback_ip_so_servers_share_a_port(api, core, namespace):
    server = ("import http.server, os\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        self.send_response(200); self.end_headers(); self.wfile.write(os.environ['HOSTNAME'].encode())\n"
              "http.server.HTTPServer((os.environ['POD_IP'], 8080), H).serve_forever()\n")
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"nodeSelector": PROCESS_NODE, "containers": [{
                "name": "web", "image": "python", "command": ["python", "-c", server],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}]}}},
    }
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)

    def ready_pods():
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        return ready if len(ready) == 2 else None
    pods = wait_for(ready_pods, timeout=90, what="two ready web pods")
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2
    for pod in pods:
        with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/", timeout=5) as resp:
            assert resp.read().decode() == pod.metadata.name


def test_pod_uses_its_service_account_token_and_rbac_in_cluster(api, core, batch, namespace):
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "read-pods"},
                                            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    probe = (
        "import json\n"
        "from kubernetes import client, config\n"
        "from kubernetes.client.exceptions import ApiException\n"
        "config.load_incluster_config()\n"
        "core = client.CoreV1Api()\n"
        "ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()\n"
        "out = {'namespace': ns, 'pods': [p.metadata.name for p in core.list_namespaced_pod(ns).items]}\n"
        "try:\n"
        "    core.list_namespaced_secret(ns); out['secrets'] = 'allowed'\n"
        "except ApiException as e:\n"
        "    out['secrets'] = e.status\n"
        "open('/dev/termination-log', 'w').write(json.dumps(out))\n")
    job = job_manifest("whoami", ["python", "-c", probe], image="python", node_selector=PROCESS_NODE)
    job["spec"]["template"]["spec"]["serviceAccountName"] = "reader"
    batch.create_namespaced_job(namespace, job)

    assert wait_for(lambda: job_finished(batch, "whoami", namespace), timeout=90, what="whoami Job") == "Complete"
    pod = only_pod(core, namespace, "job-name=whoami")
    result = json.loads(pod.status.container_statuses[0].state.terminated.message)
    assert result == {"namespace": namespace, "pods": [pod.metadata.name], "secrets": 403}


def test_deleting_a_pod_stops_its_process_within_the_grace_period_and_frees_its_storage(cluster, core, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
           "spec": {"nodeSelector": PROCESS_NODE, "terminationGracePeriodSeconds": 2,
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "containers": [{"name": "main", "image": "busybox",
                                    "command": ["sh", "-c", "head -c 1048576 /dev/zero > /scratch/blob; "
                                                            "echo written; exec sleep 600"],
                                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]}}
    core.create_namespaced_pod(namespace, pod)
    running = wait_for(lambda: (p := core.read_namespaced_pod("sleeper", namespace)).status.phase == "Running" and p,
                       what="sleeper to run")
    pid = int(running.status.container_statuses[0].container_id.split("://")[1])
    pod_dir = cluster.state_dir / "process-node" / "pods" / f"{namespace}_sleeper_{running.metadata.uid[:8]}"
    blob = pod_dir / "volumes" / "scratch" / "blob"
    wait_for(lambda: blob.is_file() and blob.stat().st_size == 1048576, timeout=30, what="the emptyDir file")
    core.delete_namespaced_pod("sleeper", namespace)

    def gone():
        try:
            core.read_namespaced_pod("sleeper", namespace)
            return False
        except client.exceptions.ApiException as err:
            return err.status == 404
    wait_for(gone, timeout=30, what="the pod to be deleted")
    assert not _alive(pid)
    # As on a kubelet, the emptyDir goes with the pod (a trainer pod holds a copy of its base model);
    # the log stays for `hack/cluster` users to read.
    wait_for(lambda: not (pod_dir / "volumes").exists(), timeout=30, what="the pod's volumes removed")
    assert "written" in (pod_dir / "logs" / "main.log").read_text()


def test_unknown_image_leaves_the_pod_waiting_with_a_clear_reason(core, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx"},
           "spec": {"nodeSelector": PROCESS_NODE, "containers": [{"name": "main", "image": "nginx:1.27"}]}}
    core.create_namespaced_pod(namespace, pod)

    def waiting():
        statuses = core.read_namespaced_pod("nginx", namespace).status.container_statuses or []
        return statuses and statuses[0].state.waiting and statuses[0].state.waiting.reason == "ErrImagePull" \
            and statuses[0].state.waiting
    assert "not known to the process node" in wait_for(waiting, what="ErrImagePull").message


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_the_operator_runs_as_a_deployment_under_its_own_service_account(cluster, crds, core, namespace):
    from helpers import kubectl
    result = kubectl(cluster, "apply", "-n", namespace, "-f", str(Path(__file__).resolve().parents[2] /
                                                                   "examples" / "operator-on-process-node.yaml"))
    assert result.returncode == 0, result.stderr

    def ready_pod():
        pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=finetune-operator").items
        return next((p for p in pods if any(c.type == "Ready" and c.status == "True"
                                            for c in p.status.conditions or [])), None)
    pod = wait_for(ready_pod, timeout=180, what="the operator pod to be Ready")
    assert pod.spec.service_account_name == "finetune-operator" and pod.spec.node_name == nodes.PROCESS_NODE_NAME
    logs = next(cluster.state_dir.glob(f"process-node/pods/{namespace}_{pod.metadata.name}_*/logs/operator.log"))
    text = logs.read_text()
    assert "Forbidden" not in text, text[-2000:]


def test_kubectl_logs_reads_a_process_node_pod_through_the_apiserver(cluster, core, batch, namespace):
    script = "for i in 1 2 3 4 5; do echo line $i; done; sleep 2; echo done"
    batch.create_namespaced_job(namespace, job_manifest("talker", ["sh", "-c", script],
                                                        node_selector=PROCESS_NODE))
    pod = wait_for(lambda: next((p for p in core.list_namespaced_pod(namespace, label_selector="job-name=talker").items
                                 if p.status.phase in ("Running", "Succeeded")), None),
                   timeout=60, what="the talker pod to start").metadata.name

    # Following while it runs returns once the container exits, with everything it wrote.
    followed = core.read_namespaced_pod_log(pod, namespace, follow=True, _preload_content=False)
    text = "".join(chunk.decode() for chunk in followed.stream())
    assert text == "".join(f"line {i}\n" for i in range(1, 6)) + "done\n"
    wait_for(lambda: job_finished(batch, "talker", namespace), timeout=30, what="the talker Job to finish")

    assert core.read_namespaced_pod_log(pod, namespace, tail_lines=2) == "line 5\ndone\n"
    assert core.read_namespaced_pod_log(pod, namespace, limit_bytes=6) == "line 1"
    result = kubectl(cluster, "logs", "-n", namespace, "job/talker", "--tail=1")
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr


def test_the_node_serves_logs_only_to_the_apiserver(cluster, namespace):
    import ssl
    import urllib.error

    from devcluster import pki
    cert, key = pki.issue(cluster.pki_dir, "user-log-snooper", "log-snooper", ("system:masters",))
    context = ssl.create_default_context(cafile=str(cluster.pki_dir / "ca.crt"))
    context.load_cert_chain(str(cert), str(key))
    url = f"https://{cluster.host}:{cluster.ports.process_node_kubelet}/containerLogs/{namespace}/any/main"
    try:
        urllib.request.urlopen(url, context=context, timeout=10)
        raise AssertionError("the node served logs to a user's certificate")
    except urllib.error.HTTPError as err:
        assert err.code == 403 and "use kubectl logs" in err.read().decode()
