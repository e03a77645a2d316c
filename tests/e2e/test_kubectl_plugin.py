"""`kubectl finetune` against the local cluster, with the operator running as a process.

One real LoRA job goes through its whole lifecycle (watch, list, describe, plot, history, logs);
a longer one is suspended, resumed and cancelled through the plugin. Objects seen on the way
are recorded as Argo CD health fixtures when FTO_RECORD_FIXTURES=1.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import pytest
import requests
from kubernetes import client, config

from argocd_fixtures import record
from helpers import wait_for
import lorajobs
from operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
PLUGIN = Path(sys.executable).parent / "kubectl-finetune"
TERMINAL = ("Succeeded", "Failed", "Cancelled")


def plugin(cluster, *args: str, kubeconfig=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(PLUGIN), "--kubeconfig", str(kubeconfig or cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)


def exported_series(metrics_text: str) -> set[str]:
    """Series names a /metrics page can carry, from its # TYPE lines (families without samples too)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names |= {"counter": {f"{name}_total", name}, "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"},
                      "summary": {f"{name}_sum", f"{name}_count", name}}.get(kind, {name})
    return names


def monitoring_metric_names(prefix: str) -> set[str]:
    text = (ROOT / "deploy" / "monitoring" / "finetune-operator-dashboard.json").read_text() + \
        (ROOT / "deploy" / "monitoring" / "rules.yaml").read_text()
    return {n for n in re.findall(r"\bfto_[a-z0-9_]+\b", text) if n.startswith(prefix)}


@pytest.fixture
def operator(cluster, namespace, tmp_path):
    proc = OperatorProcess(cluster, [namespace], tmp_path / "operator.log").start()
    yield types.SimpleNamespace(log=proc.log_path, metrics_url=f"http://127.0.0.1:{proc.metrics_port}/metrics")
    crds = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    crds.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and crds.list_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs")["items"]:
        time.sleep(0.3)
    proc.stop()


@pytest.fixture
def bucket(s3, namespace, core, base_model_uri):
    return lorajobs.data_bucket(s3, core, namespace, "plugin")


def finetunejob(cluster, bucket: str, name: str, steps: int, **output) -> dict:
    return lorajobs.lora_job(cluster, bucket, name, steps, **output)


def trainer_metrics(core, namespace: str, trainer_job: str) -> str | None:
    """The running trainer pod's /metrics page (on its pod IP; the trainer's default port)."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={trainer_job}").items
    running = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
    if not running:
        return None
    return requests.get(f"http://{running[0].status.pod_ip}:9090/metrics", timeout=5).text


def test_a_job_watched_listed_described_plotted_and_its_model_history(cluster, crds, core, namespace, operator, bucket,
                                                                      tmp_path):
    created = crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", finetunejob(
        cluster, bucket, "bot", 6, registerModelVersion={"model": "support-bot", "version": "v1"}))
    record(created, "finetunejob-new")
    watcher = subprocess.Popen([str(PLUGIN), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "watch", "bot"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, trainer_page = set(), None
    while watcher.poll() is None:
        obj = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "bot")
        status = obj.get("status") or {}
        phase = status.get("phase")
        if trainer_page is None and phase == "Running" and status.get("trainerJob"):
            try:
                trainer_page = trainer_metrics(core, namespace, status["trainerJob"])
            except requests.RequestException:
                pass
        key = f"finetunejob-{(phase or 'pending').lower()}" + ("-progress" if status.get("progress", {}).get("step") else "")
        if phase and key not in seen:
            seen.add(key)
            record(obj, key)
        time.sleep(0.5)
    out, err = watcher.communicate()
    assert watcher.returncode == 0, (out, err, operator.log.read_text()[-3000:])
    lines = out.splitlines()
    assert any("/6 " in line and "loss" in line for line in lines), out
    assert lines[-1] == "bot succeeded; registered ModelVersion support-bot-v1"

    done = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "bot")
    record(done, "finetunejob-succeeded")
    # Argo CD sees no drift: the operator never wrote spec, labels, annotations or finalizers.
    assert done["spec"] == created["spec"]
    for field in ("labels", "annotations", "finalizers"):
        assert done["metadata"].get(field) == created["metadata"].get(field), field
    assert done["metadata"]["generation"] == created["metadata"]["generation"]

    # The dashboard and the rules name only metrics the operator and the trainer really export.
    operator_page = requests.get(operator.metrics_url, timeout=5).text
    missing = monitoring_metric_names("fto_operator_") - exported_series(operator_page)
    assert not missing, f"dashboard/rules use operator metrics it does not export: {sorted(missing)}"
    assert trainer_page, "never caught the trainer's /metrics while it ran"
    missing = monitoring_metric_names("fto_trainer_") - exported_series(trainer_page)
    assert not missing, f"dashboard/rules use trainer metrics it does not export: {sorted(missing)}"

    listed = plugin(cluster, "-n", namespace, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:3] == ["bot", "Succeeded", "6/6"]

    described = plugin(cluster, "describe", "bot", "-n", namespace).stdout
    for part in ("Conditions:", "Validated", "Checkpoints:", "Result:", "Lineage:", "support-bot-v1"):
        assert part in described, (part, described)

    png = tmp_path / "loss.png"
    plotted = plugin(cluster, "-n", namespace, "plot", "bot", "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:4] == b"\x89PNG" and "train and" in plotted.stdout

    mv = wait_for(lambda: crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "support-bot-v1"),
                  what="the registered ModelVersion")
    history = plugin(cluster, "-n", namespace, "history", "support-bot")
    assert history.returncode == 0, history.stderr
    assert history.stdout.splitlines()[1].split()[:3] == ["v1", "support-bot-v1", "candidate"]
    assert "Model:" in plugin(cluster, "-n", namespace, "describe", "support-bot-v1").stdout
    try:
        registered = wait_for(lambda: (lambda o: o if (o.get("status") or {}).get("phase") in ("Registered", "Failed") else None)(
            crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "support-bot-v1")),
            timeout=60, what="the ModelVersion registered")
        record(registered, f"modelversion-{registered['status']['phase'].lower()}")
    except AssertionError:
        record(mv, "modelversion-new")  # no ModelVersion controller in this operator yet

    logs = plugin(cluster, "-n", namespace, "logs", "bot")
    assert logs.returncode == 0, logs.stderr
    assert "INFO data: {" in logs.stdout  # the trainer's dataset report, read through the apiserver


def test_suspend_resume_and_cancel_through_the_plugin(cluster, crds, namespace, operator, bucket):
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs",
                                         finetunejob(cluster, bucket, "long", 200))

    def phase():
        obj = crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", "long")
        return obj, (obj.get("status") or {}).get("phase")

    wait_for(lambda: phase()[1] == "Running", timeout=300, interval=1, what="the job running")
    suspended = plugin(cluster, "-n", namespace, "suspend", "long")
    assert suspended.returncode == 0 and "suspend requested (was Running)" in suspended.stdout, suspended.stderr
    obj = wait_for(lambda: (lambda o, p: o if p == "Suspended" else None)(*phase()), timeout=120, interval=1,
                   what="the job suspended")
    record(obj, "finetunejob-suspended")
    assert plugin(cluster, "-n", namespace, "resume", "long").returncode == 0
    wait_for(lambda: phase()[1] in ("Running", "Pending", "Queued", "Validating"), timeout=120, interval=1,
             what="the job resumed")
    cancelled = plugin(cluster, "-n", namespace, "cancel", "long")
    assert cancelled.returncode == 0, cancelled.stderr
    obj = wait_for(lambda: (lambda o, p: o if p == "Cancelled" else None)(*phase()), timeout=120, interval=1,
                   what="the job cancelled")
    record(obj, "finetunejob-cancelled")
    again = plugin(cluster, "-n", namespace, "cancel", "long")
    assert again.returncode == 1 and "already ended (Cancelled); nothing to cancel" in again.stderr


def test_promote_rollback_and_history_edit_only_spec_stage(cluster, crds, namespace):
    """No operator here: the versions' promotion history is written into their status by the test
    (what the ModelVersion controller records), and the plugin's writes are checked on spec."""
    for v, promoted, phase in (("v1", "2026-01-01T00:00:00Z", "Registered"), ("v2", "2026-01-02T00:00:00Z", "Production"),
                               ("v3", None, "Registered")):
        crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion", "metadata": {"name": f"bot-{v}"},
            "spec": {"model": "bot", "version": v, "stage": "production" if v == "v2" else "candidate",
                     "adapter": {"fromJob": {"name": "bot"}},
                     "servingTarget": {"selector": {"matchLabels": {"app": "bot"}}}}})
        crds.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "modelversions", f"bot-{v}", {
            "status": {"phase": phase, **({"promotedAt": promoted} if promoted else {})}})

    rolled = plugin(cluster, "-n", namespace, "rollback", "bot")
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.strip() == "model bot: rolling back to bot-v1 (from bot-v2); stage set to production"
    assert crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "bot-v1")["spec"]["stage"] == "production"

    promoted = plugin(cluster, "-n", namespace, "promote", "bot-v3")
    assert promoted.returncode == 0 and "stage set to production" in promoted.stdout, promoted.stderr
    assert crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", "bot-v3")["spec"]["stage"] == "production"

    history = plugin(cluster, "-n", namespace, "history", "bot").stdout.splitlines()
    assert [line.split()[0] for line in history[1:]] == ["v1", "v2", "v3"]
    assert "2026-01-02T00:00:00Z" in history[2]
    missing = plugin(cluster, "-n", namespace, "promote", "bot-v9")
    assert missing.returncode == 1 and f"modelversion bot-v9 not found in namespace {namespace}" in missing.stderr


def test_errors_come_in_plain_words_with_the_users_own_rbac(cluster, crds, namespace):
    from devcluster import kubeconfig
    nobody = kubeconfig.mint_user(cluster, f"nobody-{uuid.uuid4().hex[:5]}")
    listed = plugin(cluster, "-n", namespace, "list", kubeconfig=nobody)
    assert listed.returncode == 1
    assert listed.stderr.strip().startswith(f"error: you are not allowed to list finetunejobs in namespace {namespace}")
    assert "Traceback" not in listed.stderr
    # The same binary as a kubectl plugin, found on PATH.
    kubectl = str(cluster.binary("KUBERNETES", "kubectl"))
    env = dict(os.environ, PATH=f"{PLUGIN.parent}{os.pathsep}{os.environ['PATH']}", KUBECONFIG=str(cluster.kubeconfig))
    via_kubectl = subprocess.run([kubectl, "finetune", "list", "-n", namespace], capture_output=True, text=True,
                                 env=env, timeout=60)
    assert via_kubectl.returncode == 0 and f"No FineTuneJobs found in namespace {namespace}." in via_kubectl.stdout
