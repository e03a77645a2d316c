"""Helpers shared by the e2e tests."""
from __future__ import annotations

import subprocess
import time

# Where the e2e tests find the default model in MinIO (the base_model_uri fixture uploads it).
BASE_MODEL_URI = "s3://fto-test-models/smollm2-135m-instruct/"


def wait_for(check, timeout: float = 60.0, interval: float = 0.3, what: str = "condition"):
    """Polls check() until it returns something truthy; returns that. Exceptions count as not yet."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # noqa: BLE001 - e.g. 404 until the object exists
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def job_manifest(name: str, command: list[str], image: str = "busybox", node_selector: dict | None = None,
                 tolerations: list | None = None, resources: dict | None = None, annotations: dict | None = None,
                 env: list | None = None, backoff_limit: int = 0, extra_container: dict | None = None) -> dict:
    container = {"name": "main", "image": image, "command": command, "env": env or [],
                 "resources": resources or {}, **(extra_container or {})}
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {"restartPolicy": "Never", "nodeSelector": node_selector or {},
                     "tolerations": tolerations or [], "containers": [container]}}},
    }


def job_finished(batch, name: str, namespace: str):
    """'Complete' or 'Failed' once the Job has that condition, else None."""
    job = batch.read_namespaced_job_status(name, namespace)
    for cond in job.status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond.type
    return None


def only_pod(core, namespace: str, selector: str):
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    assert len(pods) == 1, f"expected one pod for {selector}, found {[p.metadata.name for p in pods]}"
    return pods[0]


def kubectl(cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs the cluster's own kubectl as the admin identity."""
    return subprocess.run([str(cluster.binary("KUBERNETES", "kubectl")), f"--kubeconfig={cluster.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=timeout)
