"""What each `kubectl finetune` subcommand does against the cluster. Formatting lives in format.py."""
from __future__ import annotations

import datetime as dt
import sys
import time

from . import format as fmt
from . import plot, rollback
from .errors import PluginError
from .kubeapi import JOBS, VERSIONS, Cluster


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def list_jobs(cluster: Cluster, all_namespaces: bool) -> str:
    jobs = cluster.list(JOBS, all_namespaces)
    if not jobs:
        return "No FineTuneJobs found" + ("" if all_namespaces else f" in namespace {cluster.namespace}") + "."
    return fmt.jobs_table(jobs, now(), all_namespaces)


def describe(cluster: Cluster, name: str) -> str:
    """A FineTuneJob by that name, else a ModelVersion."""
    try:
        return fmt.describe_job(cluster.get(JOBS, name, "describe"), now())
    except PluginError as job_error:
        if "not found" not in str(job_error):
            raise
    try:
        return fmt.describe_version(cluster.get(VERSIONS, name, "describe"), now())
    except PluginError as version_error:
        if "not found" in str(version_error):
            raise PluginError(f"no finetunejob or modelversion named {name} in namespace {cluster.namespace}") from None
        raise


def watch(cluster: Cluster, name: str, out=sys.stdout, interval: float = 1.0) -> int:
    """Redraws the progress line until the job ends; exit code 0 when it succeeded."""
    tty = out.isatty()
    last = None
    while True:
        job = cluster.get(JOBS, name, "watch")
        line = fmt.progress_line(job)
        if line != last:
            out.write(("\r\033[K" + line) if tty else line + "\n")
            out.flush()
            last = line
        phase = (job.get("status") or {}).get("phase")
        if phase in fmt.TERMINAL_JOB_PHASES:
            status = job["status"]
            if tty:
                out.write("\n")
            if phase != "Succeeded":
                out.write(f"{name} {phase.lower()}: {status.get('reason', '')} {status.get('message', '')}".rstrip() + "\n")
            elif status.get("modelVersion"):
                out.write(f"{name} succeeded; registered ModelVersion {status['modelVersion']}\n")
            return 0 if phase == "Succeeded" else 1
        time.sleep(interval)


def trainer_pod(cluster: Cluster, job: dict) -> str:
    """The newest pod of the current trainer Job, or the validate-only pod before training starts."""
    status = job.get("status") or {}
    if status.get("trainerJob"):
        pods = cluster.call("list", "pods", None, cluster.core().list_namespaced_pod, cluster.namespace,
                            label_selector=f"job-name={status['trainerJob']}").items
        if pods:
            return max(pods, key=lambda p: p.metadata.creation_timestamp).metadata.name
    if status.get("validationPod"):
        return status["validationPod"]
    raise PluginError(f"finetunejob {job['metadata']['name']} has no trainer or validation pod yet "
                      f"(phase {status.get('phase', 'Pending')})")


def logs(cluster: Cluster, name: str, follow: bool, tail: int | None, out=sys.stdout) -> None:
    pod = trainer_pod(cluster, cluster.get(JOBS, name, "read"))
    core = cluster.core()
    kwargs = {"tail_lines": tail} if tail else {}
    from kubernetes.client.exceptions import ApiException
    try:
        if follow:
            stream = core.read_namespaced_pod_log(pod, cluster.namespace, follow=True, _preload_content=False, **kwargs)
            for chunk in stream.stream():
                out.write(chunk.decode(errors="replace"))
                out.flush()
        else:
            out.write(core.read_namespaced_pod_log(pod, cluster.namespace, **kwargs))
    except ApiException as err:
        raise _log_error(cluster, pod, err) from None


def _log_error(cluster: Cluster, pod: str, err) -> PluginError:
    from .errors import explain
    plain = explain(err, "read the logs of", "pod", pod, cluster.namespace)
    if err.status in (400, 500, 502, 503) or "dial" in str(err.body or "") or "connection" in str(err.body or ""):
        node = None
        try:
            node = cluster.core().read_namespaced_pod(pod, cluster.namespace).spec.node_name
        except Exception:  # noqa: BLE001 - only for a better hint
            pass
        hint = f"; the node {node} did not serve them (its kubelet API is unreachable)" if node else ""
        return PluginError(f"could not read the logs of pod {pod} in namespace {cluster.namespace}{hint}: "
                           f"{str(plain).split(': ', 1)[-1]}")
    return plain


def set_lifecycle(cluster: Cluster, name: str, field: str, value: bool, verb: str) -> str:
    job = cluster.get(JOBS, name, verb)
    phase = (job.get("status") or {}).get("phase")
    if phase in fmt.TERMINAL_JOB_PHASES:
        raise PluginError(f"finetunejob {name} already ended ({phase}); nothing to {verb}")
    cluster.patch(JOBS, name, {"spec": {"lifecycle": {field: value}}}, verb)
    return f"finetunejob {name}: {verb} requested (was {phase or 'Pending'})"


def promote(cluster: Cluster, version: str) -> str:
    mv = cluster.get(VERSIONS, version, "promote")
    status = mv.get("status") or {}
    if mv["spec"].get("stage") == "production":
        refused = status.get("phase") in ("Registered", "RolledBack") and \
            status.get("observedGeneration") == mv["metadata"].get("generation")
        if not refused:
            return f"modelversion {version} already asks for production (phase {status.get('phase', 'Pending')})"
        # The operator decides a request once per generation: asking again is a spec change.
        cluster.patch(VERSIONS, version, {"spec": {"stage": "candidate"}}, "promote")
        cluster.patch(VERSIONS, version, {"spec": {"stage": "production"}}, "promote")
        return (f"modelversion {version}: its last production request ended {status.get('phase')}/"
                f"{status.get('reason', '')}; asked again (stage candidate, then production)")
    cluster.patch(VERSIONS, version, {"spec": {"stage": "production"}}, "promote")
    return (f"modelversion {version} ({mv['spec'].get('model')} {mv['spec'].get('version')}): stage set to production; "
            f"the operator runs its gates and rollout (kubectl finetune history {mv['spec'].get('model')})")


def rollback_model(cluster: Cluster, model: str, to: str | None) -> str:
    versions = rollback.versions_of(cluster.list(VERSIONS), model)
    if not versions:
        raise PluginError(f"no modelversions of model {model} in namespace {cluster.namespace}")
    if to:
        target = next((v for v in versions if v["metadata"]["name"] == to or v["spec"].get("version") == to), None)
        if target is None:
            raise PluginError(f"model {model} has no version {to}")
    # The operator's production record says which version serves and which served before it; a user who
    # may not read the operator's namespace gets the same answer from the versions' status.
    where = rollback.record_location(versions)
    record = cluster.config_map_or_none(where[1], namespace=where[0]) if where else None
    if not to:
        target = rollback.previous_production(versions, record)
    current = rollback.current_production(versions, record)
    cluster.patch(VERSIONS, target["metadata"]["name"], {"spec": {"stage": "production"}}, "roll back to")
    was = f" (from {current['metadata']['name']})" if current is not None else ""
    return f"model {model}: rolling back to {target['metadata']['name']}{was}; stage set to production"


def history(cluster: Cluster, model: str) -> str:
    versions = rollback.versions_of(cluster.list(VERSIONS), model)
    if not versions:
        raise PluginError(f"no modelversions of model {model} in namespace {cluster.namespace}")
    return fmt.history_table(versions, now())


def plot_job(cluster: Cluster, name: str, output: str | None) -> str:
    job = cluster.get(JOBS, name, "plot")
    path = output or f"{name}-loss.png"
    train, evals = plot.write_png(job, path)
    return f"wrote {path} ({train} train and {evals} eval points)"
