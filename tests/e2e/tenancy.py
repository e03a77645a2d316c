"""A chart release with two tenant namespaces, shared by the tenant-safety e2e tests.

`install_tenancy(...)` installs one release of the chart whose admission policies apply only to
the two tenant namespaces it labels (so other tests are untouched); tenants are impersonated
(`as_user`, kubectl --as) or minted client certificates (the `user_api` fixture). A test module
makes its own module-scoped fixture from it, passing extra chart values:

    @pytest.fixture(scope="module")
    def tenancy(cluster, crds, core, s3):
        yield from install_tenancy(cluster, core, s3, {"promotion": {...}})

`operator_under_sa(...)` runs the operator under a token of the chart's ServiceAccount.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import yaml
from kubernetes import client, config

from chart_helpers import CHART, helm, operator_supports_chart_flags
from devcluster import components
from helpers import BASE_MODEL_URI, kubectl, wait_for

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
PROMOTERS = "ml-promoters"


class Tenancy:
    def __init__(self, release: str, system: str, team_a: str, team_b: str, bucket: str, a_bucket: str):
        self.release, self.system, self.team_a, self.team_b = release, system, team_a, team_b
        self.bucket, self.a_bucket = bucket, a_bucket
        self.sa = f"{release}-finetune-operator"


def install_tenancy(cluster, core, s3, extra_values: dict | None = None):
    """Installs the release and yields a Tenancy; uninstalls and deletes its namespaces after."""
    tag = uuid.uuid4().hex[:5]
    t = Tenancy(f"rbac-{tag}", f"rbac-sys-{tag}", f"team-a-{tag}", f"team-b-{tag}", f"rbac-{tag}", f"team-a-only-{tag}")
    for ns in (t.system, t.team_a, t.team_b):
        labels = {"fto-test-admission": t.release} if ns != t.system else {}
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels=labels)))
    for bucket in (t.bucket, t.a_bucket):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(CHART.parents[1] / "examples" / "datasets" / "support-tickets.jsonl"), t.bucket, "data/train.jsonl")
    core.create_namespaced_secret(t.system, client.V1Secret(  # for the inference example's agent
        metadata=client.V1ObjectMeta(name="s3-credentials", labels={"finetune.fto.dev/credentials": "true"}),
        string_data={"AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD}))
    values = {
        "operator": {"replicas": 0},  # the SA test runs the operator itself, under the same identity
        # The chart's example inference target serves the full flow's ModelVersion (process node).
        "inferenceExample": {"enabled": True, "nodeSelector": {"fto.dev/process-node": "true"},
                             # The engine serves the very base model the jobs train from.
                             "engine": {"maxLoraRank": 16, "maxLoras": 2, "model": BASE_MODEL_URI},
                             "s3": {"credentialsSecret": "s3-credentials", "endpoint": cluster.s3_endpoint}},
        "promotion": {"group": PROMOTERS},
        "admission": {"namespaceSelector": {"matchLabels": {"fto-test-admission": t.release}}},
        "s3AllowList": {"enabled": True, "buckets": [t.bucket, BASE_MODEL_URI.split("/")[2]],
                        "endpoints": [cluster.s3_endpoint], "namespaces": {t.team_a: {"buckets": [t.a_bucket],
                                                                      # an admin mistake the metadata guard still catches
                                                                      "endpoints": ["http://169.254.169.254"]}}},  # refused by policy, never dialled
    }
    values = merge(values, extra_values or {})
    installed = helm(cluster, "install", t.release, str(CHART), "--namespace", t.system, "-f", "-", input_=yaml.safe_dump(values))
    try:
        assert installed.returncode == 0, installed.stderr
        yield from _tenants(cluster, core, t, tag)
    finally:
        helm(cluster, "uninstall", t.release, "--namespace", t.system, "--wait", "--timeout", "60s")
        for ns in (t.system, t.team_a, t.team_b):
            core.delete_namespace(ns)


def _tenants(cluster, core, t, tag):
    for ns, group in ((t.team_a, "team-a"), (t.team_b, "team-b")):
        # Tenants get the built-in edit role; the release's <fullname>-edit is aggregated into it.
        kubectl(cluster, "create", "rolebinding", "team-edit", "-n", ns, "--clusterrole=edit", f"--group={group}-{tag}")
        kubectl(cluster, "create", "rolebinding", "team-view", "-n", ns, "--clusterrole=view", f"--group=viewers-{tag}")
        core.create_namespaced_secret(ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name="s3-credentials", labels={"finetune.fto.dev/credentials": "true"}),
            string_data={"AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD}))
    wait_for(lambda: as_user(cluster, f"a-{tag}", [f"team-a-{tag}"], "auth", "can-i", "create", "finetunejobs.finetune.fto.dev",
                             "-n", t.team_a).stdout.strip() == "yes", what="the tenant role aggregated into edit")
    t.tag = tag
    # The apiserver's policy and param caches catch up a moment after the install.
    wait_for(lambda: as_user(cluster, None, [], "apply", "--dry-run=server", "-n", t.team_a, "-f", "-",
                             stdin=json.dumps(job(cluster, "probe", t.bucket))).returncode == 0,
             what="the admission policies to be active")
    yield t


def as_user(cluster, user: str | None, groups: list[str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """kubectl as the admin, impersonating user (and groups); user None: the admin itself."""
    imp = [f"--as={user}", *[f"--as-group={g}" for g in groups]] if user else []
    return subprocess.run([str(cluster.binary("KUBERNETES", "kubectl")), f"--kubeconfig={cluster.kubeconfig}", *imp, *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def job(cluster, name: str, bucket: str, **spec_overrides) -> dict:
    spec = {"baseModel": {"name": "smollm2-135m-instruct", "uri": BASE_MODEL_URI},
            "dataset": {"uri": f"s3://{bucket}/data/train.jsonl", "format": "promptCompletion", "validationSplit": 0.1},
            "credentials": {"secretRef": {"name": "s3-credentials"}, "endpoint": cluster.s3_endpoint},
            "training": {"maxSteps": 2, "batchSize": 2, "maxSeqLength": 128},
            "evaluation": {"samples": 0}, "resources": {"gpusPerNode": 0},
            "output": {"uri": f"s3://{bucket}/out/{name}/"}}
    for path, value in spec_overrides.items():
        node = spec
        *parents, leaf = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneJob", "metadata": {"name": name}, "spec": spec}


def version(name: str, stage: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": "support-bot", "version": name.rsplit("-", 1)[-1], "stage": stage,
                     "adapter": {"fromJob": {"name": "bot"}}, "credentials": {"secretRef": {"name": "s3-credentials"}},
                     "servingTarget": {"selector": {"matchLabels": {"app": "support-bot"}}}}}


def apply(cluster, ns: str, obj: dict, user: str, groups: list[str]) -> subprocess.CompletedProcess:
    return as_user(cluster, user, groups, "apply", "-n", ns, "-f", "-", stdin=json.dumps(obj))

def merge(base: dict, extra: dict) -> dict:
    """Deep merge of chart values: extra's keys win, nested dicts are merged."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def service_account_kubeconfig(cluster, core, tenancy, path) -> str:
    token = core.create_namespaced_service_account_token(
        tenancy.sa, tenancy.system, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    admin["contexts"] = [{"name": "operator", "context": {"cluster": admin["clusters"][0]["name"], "user": "operator"}}]
    admin["current-context"] = "operator"
    path.write_text(yaml.safe_dump(admin))
    return str(path)


def operator_under_sa(cluster, core, tenancy, tmp_path, namespaces: list[str] | None = None, extra_args: tuple = ()):
    """Starts the operator under the chart ServiceAccount's token; returns (kubeconfig, log path, process)."""
    kubeconfig = service_account_kubeconfig(cluster, core, tenancy, tmp_path / "sa.kubeconfig")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if operator_supports_chart_flags():
        mode = ["--leader-election-lease", "finetune-operator", "--leader-election-namespace", tenancy.system,
                "--metrics-address", ""]
    else:
        mode = ["--standalone"]
    scope = [a for ns in (namespaces or [tenancy.team_a, tenancy.system]) for a in ("--namespace", ns)]
    log = open(tmp_path / "operator.log", "w")
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    proc = subprocess.Popen([sys.executable, "-m", "finetune_operator", *scope,
                             "--liveness", f"http://127.0.0.1:{port}/healthz", *mode, *extra_args],
                            env=dict(env, KUBECONFIG=kubeconfig), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return kubeconfig, tmp_path / "operator.log", proc


def stop_operator(cluster, proc, namespaces: list[str]) -> None:
    """Deletes the jobs while the operator still runs (its finalizers), then stops it."""
    admin = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    for ns in namespaces:
        admin.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, "finetunejobs")
    proc.terminate()
    proc.wait(timeout=30)
