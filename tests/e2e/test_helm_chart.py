"""The chart against the real apiserver: server-side dry-run, install, upgrade, schema refusals."""
from __future__ import annotations

import subprocess

import pytest

from chart_helpers import CHART, ON_PROCESS_NODE, helm, operator_supports_chart_flags, template
from helpers import wait_for

VALUE_SETS = {
    "defaults": [],
    "named-namespaces": ["--set", "operator.watchNamespaces={NS}"],
    "everything-on": ["--set", "s3AllowList.enabled=true", "--set", "s3AllowList.buckets={models}",
                      "--set", "s3AllowList.namespaces.NS.buckets={team-data}", "--set", "inferenceExample.enabled=true",
                      "--set", "operator.replicas=3", "--set", "operator.logLevel=debug", "--set", "promotion.group=ml"],
    "minimal": ["--set", "networkPolicy.enabled=false", "--set", "operator.podDisruptionBudget.enabled=false",
                "--set", "metrics.grafanaDashboard.enabled=false", "--set", "rbac.tenantRoles=false",
                "--set", "promotion.enforce=false", "--set", "operator.replicas=1"],
}
# The admission policies of a test release apply only to namespaces carrying this label, so
# they never touch the other tests' objects.
SCOPED = ["--set-string", "admission.namespaceSelector.matchLabels.fto-test-admission=NS"]


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_template_output_passes_a_server_side_dry_run(cluster, crds, namespace, values):
    args = [a.replace("NS", namespace) for a in VALUE_SETS[values] + SCOPED]
    manifests = template(cluster, "dry", namespace, *args)
    kubectl = str(cluster.binary("KUBERNETES", "kubectl"))
    result = subprocess.run([kubectl, f"--kubeconfig={cluster.kubeconfig}", "apply", "--dry-run=server", "-f", "-"],
                            input=manifests, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/dry-finetune-operator created (server dry run)" in result.stdout


@pytest.fixture
def release(cluster, crds, namespace):
    name = f"fto-{namespace[-5:]}"
    yield name, namespace
    helm(cluster, "uninstall", name, "--namespace", namespace, "--wait", "--timeout", "60s")


def test_install_and_upgrade_into_the_cluster(cluster, core, api, release):
    from kubernetes import client
    name, ns = release
    scoped = [a.replace("NS", ns) for a in SCOPED]
    installed = helm(cluster, "install", name, str(CHART), "--namespace", ns, *ON_PROCESS_NODE, *scoped)
    assert installed.returncode == 0, installed.stderr
    apps = client.AppsV1Api(api)
    deployment = f"{name}-finetune-operator"
    deploy = apps.read_namespaced_deployment(deployment, ns)
    assert deploy.spec.replicas == 2
    assert core.read_namespaced_service(f"{name}-finetune-operator-metrics", ns).spec.ports[0].port == 8081
    assert core.read_namespaced_config_map(f"{name}-finetune-operator-dashboard", ns).metadata.labels["grafana_dashboard"] == "1"
    assert client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(deployment, ns)
    assert client.NetworkingV1Api(api).read_namespaced_network_policy(deployment, ns)

    if operator_supports_chart_flags():
        wait_for(lambda: (apps.read_namespaced_deployment_status(deployment, ns).status.available_replicas
                          or 0) == 2, timeout=120, what="both operator replicas available")
        lease = wait_for(lambda: client.CoordinationV1Api(api).read_namespaced_lease("finetune-operator", ns),
                         timeout=60, what="the leader-election Lease")
        assert lease.spec.holder_identity.startswith(f"{deployment}-")

    upgraded = helm(cluster, "upgrade", name, str(CHART), "--namespace", ns, *ON_PROCESS_NODE, *scoped,
                    "--set", "operator.settings.trainerImage=registry.example/trainer:0.2.0")
    assert upgraded.returncode == 0, upgraded.stderr
    container = apps.read_namespaced_deployment(deployment, ns).spec.template.spec.containers[0]
    assert {e.name: e.value for e in container.env}["FTO_TRAINER_IMAGE"] == "registry.example/trainer:0.2.0"
    history = helm(cluster, "history", name, "--namespace", ns, "-o", "json")
    assert '"revision":2' in history.stdout and '"status":"deployed"' in history.stdout


def test_a_bad_value_fails_helm_install_with_a_message_naming_it(cluster, crds, namespace):
    result = helm(cluster, "install", "bad", str(CHART), "--namespace", namespace, "--set", "operator.replicas=many")
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert "/operator/replicas" in result.stderr and "want integer" in result.stderr
    assert helm(cluster, "status", "bad", "--namespace", namespace).returncode != 0, "no release was created"


def test_the_inference_example_serves_with_its_adapter_agent_sidecar(cluster, core, api, release):
    """The chart's example inference target, on the process node: engine + agent ready, the agent
    answering its client API and (with the chart's generated token) its admin API."""
    import base64

    import requests
    from kubernetes import client
    name, ns = release
    scoped = [a.replace("NS", ns) for a in SCOPED]
    installed = helm(cluster, "install", name, str(CHART), "--namespace", ns, "-f", str(CHART / "values-local.yaml"),
                     "--set", "operator.replicas=0", "--set", "inferenceExample.enabled=true", *scoped)
    assert installed.returncode == 0, installed.stderr
    apps = client.AppsV1Api(api)
    wait_for(lambda: (apps.read_namespaced_deployment_status("finetune-inference", ns).status.available_replicas or 0) == 1,
             timeout=300, interval=1, what="the inference example available (engine and agent ready)")
    pod = core.list_namespaced_pod(ns, label_selector="app=finetune-inference").items[0]
    models = requests.get(f"http://{pod.status.pod_ip}:8000/v1/models", timeout=10)
    assert models.status_code == 200, models.text
    token = base64.b64decode(core.read_namespaced_secret("finetune-inference-agent-token", ns).data["token"]).decode()
    state = requests.get(f"http://{pod.status.pod_ip}:8001/admin/state", headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    assert state.status_code == 200 and state.json()["engine"]["ready"] is True, state.text
    assert requests.get(f"http://{pod.status.pod_ip}:8001/admin/state", timeout=10).status_code == 401
