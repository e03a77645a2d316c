"""What `helm template` produces for the values a platform team sets (no cluster needed)."""
from __future__ import annotations

import json

import pytest

from chartlib import CHART, find, kinds, render, run_helm

PROCESS_NODE = ["--set-string", "operator.nodeSelector.fto\\.dev/process-node=true"]


def test_helm_lint_passes_with_defaults_and_with_every_option_on():
    assert "0 chart(s) failed" in run_helm("lint", str(CHART)).stdout
    on = ["--set", "s3AllowList.enabled=true", "--set", "s3AllowList.buckets={models}",
          "--set", "inferenceExample.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
          "--set", "metrics.prometheusRule.enabled=true", "--set", "operator.watchNamespaces={team-a,team-b}"]
    assert "0 chart(s) failed" in run_helm("lint", str(CHART), *on).stdout


def test_operator_runs_two_replicas_with_leader_election_in_the_release_namespace():
    objs = render()
    deploy = find(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args
    assert args[args.index("--leader-election-lease") + 1] == "finetune-operator"
    assert args[args.index("--leader-election-namespace") + 1] == "fto-system"
    assert args[args.index("--metrics-address") + 1] == "$(POD_IP):8081"
    pdb = find(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]


def test_operator_container_is_restricted_and_probed():
    spec = find(render(), "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    sc = container["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080} in container["ports"]
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_operator_settings_reach_the_operator_as_env():
    from finetune_operator.builders.settings import OperatorSettings
    container = find(render("--set", "operator.settings.trainerImage=registry.example/trainer:2",
                            "--set", "operator.settings.trainerMetricsPort=9191",
                            "--set", "operator.settings.maxGpusPerNamespace=16",
                            "--set-string", "operator.settings.validateNodeSelector.pool=cpu"), "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = OperatorSettings.from_env(env)
    assert settings.trainer_image == "registry.example/trainer:2" and settings.metrics_port == 9191
    assert settings.max_gpus_per_namespace == 16 and settings.max_running_jobs_per_namespace is None
    assert settings.validate_node_selector == {"pool": "cpu"}


def test_default_settings_are_the_operators_own_defaults():
    from finetune_operator.builders.settings import OperatorSettings
    container = find(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert OperatorSettings.from_env(env) == OperatorSettings()


def test_watching_named_namespaces_binds_the_cluster_role_in_each_of_them_only():
    objs = render("--set", "operator.watchNamespaces={team-a,team-b}")
    args = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" not in args and args.count("--namespace") == 2
    assert "ClusterRoleBinding" not in kinds(objs)
    bound = {b["metadata"]["namespace"] for b in objs
             if b["kind"] == "RoleBinding" and b["roleRef"]["kind"] == "ClusterRole"}
    assert bound == {"team-a", "team-b"}
    cluster_role = find(objs, "ClusterRole", "fto-finetune-operator")
    assert not any("namespaces" in r["resources"] for r in cluster_role["rules"])


def test_node_selector_and_tolerations_reach_the_operator_pods():
    spec = find(render(*PROCESS_NODE, "--set", "operator.tolerations[0].key=dedicated",
                       "--set", "operator.tolerations[0].operator=Exists"), "Deployment")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"fto.dev/process-node": "true"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]


def test_monitoring_objects_need_the_prometheus_operator_api():
    on = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
          "--set", "metrics.prometheusRule.enabled=true"]
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & kinds(render(*on))
    apis = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor", "--api-versions",
            "monitoring.coreos.com/v1/PodMonitor", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]
    objs = render(*on, *apis)
    monitor = find(objs, "ServiceMonitor")
    service = find(objs, "Service", "fto-finetune-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["port"] == 8081
    assert [g["name"] for g in find(objs, "PrometheusRule")["spec"]["groups"]] == [
        "finetune-operator.recording", "finetune-operator.alerts"]
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & kinds(render(*apis))  # off by default


def test_grafana_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard():
    cm = find(render(), "ConfigMap", "fto-finetune-operator-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["finetune-operator.json"])["uid"] == "finetune-operator"


def test_network_policy_admits_only_the_metrics_port():
    policy = find(render(), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]  # egress: tests/unit/chart/test_chart_network.py
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8081, "protocol": "TCP"}]}]


def test_inference_example_is_off_by_default_and_pairs_engine_with_agent_sidecar():
    assert not [o for o in render() if o["kind"] == "Deployment" and o["metadata"]["name"] == "finetune-inference"]
    objs = render("--set", "inferenceExample.enabled=true")
    pod = find(objs, "Deployment", "finetune-inference")["spec"]["template"]["spec"]
    engine, agent = pod["containers"]
    assert engine["image"].startswith("finetune-operator/inference-engine")
    assert agent["image"].startswith("finetune-operator/adapter-agent")
    assert {m["name"] for m in engine["volumeMounts"]} & {m["name"] for m in agent["volumeMounts"]} >= {"adapters"}
    assert {"name": "admin", "containerPort": 8001} in agent["ports"]
    token = next(e for e in agent["env"] if e["name"] == "FTO_AGENT_TOKEN")["valueFrom"]["secretKeyRef"]
    assert find(objs, "Secret", token["name"])["data"][token["key"]]


def test_s3_allow_list_is_written_into_the_cluster_scoped_policy():
    objs = render("--set", "s3AllowList.enabled=true", "--set", "s3AllowList.buckets={models,shared-data}",
                  "--set", "s3AllowList.endpoints={https://S3.example.com/}",
                  "--set", "s3AllowList.namespaces.team-a.buckets={team-a-data}")
    policy = find(objs, "ValidatingAdmissionPolicy", "fto-finetune-operator-s3-allowlist")
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert json.loads(variables["perNamespace"]) == {"team-a": {"buckets": ["team-a-data"], "endpoints": [],
                                                                "prefixes": []}}
    assert variables["buckets"].startswith('["models","shared-data"]')
    assert variables["endpoints"].startswith('["https://s3.example.com"]')  # normalised like the spec's endpoint
    assert "paramKind" not in policy["spec"]
    assert find(objs, "ValidatingAdmissionPolicyBinding", "fto-finetune-operator-s3-allowlist")["spec"][
        "policyName"] == "fto-finetune-operator-s3-allowlist"


def test_metadata_endpoint_guard_is_always_installed():
    names = {o["metadata"]["name"] for o in render() if o["kind"] == "ValidatingAdmissionPolicy"}
    assert "fto-finetune-operator-metadata-endpoints" in names
    assert "fto-finetune-operator-s3-allowlist" not in names


def test_promotion_policy_names_the_configured_group_and_lets_the_operator_through():
    policy = find(render("--set", "promotion.group=ml-release"), "ValidatingAdmissionPolicy",
                  "fto-finetune-operator-promotion")
    text = json.dumps(policy["spec"])
    assert "ml-release" in text and "system:serviceaccount:fto-system:fto-finetune-operator" in text


@pytest.mark.parametrize("args, message", [
    (["--set", "operator.replicas=-1"], "/operator/replicas"),
    (["--set", "operator.metricsPort=70000"], "/operator/metricsPort"),
    (["--set", "operator.logLevel=loud"], "/operator/logLevel"),
    (["--set", "operator.replica=2"], "additional properties 'replica' not allowed"),
    (["--set", "s3AllowList.endpoints={s3.example.com}"], "/s3AllowList/endpoints/0"),
    (["--set", "operator.watchNamespaces={Team_A}"], "/operator/watchNamespaces/0"),
    (["--set", "operator.nodeSelector.gpu=true"], "/operator/nodeSelector/gpu"),
])
def test_bad_values_are_refused_naming_the_value(args, message):
    result = run_helm("template", "fto", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                  "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "PriorityClass"}


def test_two_releases_share_no_cluster_scoped_name():
    # A demo release and a second team's (or the tests') release on one cluster: Helm refuses to
    # install an object another release owns ("invalid ownership metadata").
    def names(release, namespace):
        return {(o["kind"], o["metadata"]["name"]) for o in render(release=release, namespace=namespace)
                if o["kind"] in CLUSTER_SCOPED}
    first, second = names("finetune-operator", "fto-demo"), names("team-b-fto", "team-b-system")
    assert first and second
    assert first & second == set()


def test_tenant_roles_are_named_after_the_release_and_aggregate_into_edit_and_view():
    objs = render(release="fto", namespace="fto-system")
    edit = find(objs, "ClusterRole", "fto-finetune-operator-edit")
    view = find(objs, "ClusterRole", "fto-finetune-operator-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
