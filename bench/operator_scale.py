"""The operator under a burst of FineTuneJobs on kwok GPU nodes, against a bare client doing the same object work.

Starts its own cluster (FTO_PORT_BASE=7000, a temporary state dir; your cluster is untouched). For each
N and each worker setting, each run in a fresh namespace on a quiet cluster (the previous run's
namespace is deleted first):
- operator: creates N FineTuneJobs as fast as the API takes them while the real operator runs (a
  subprocess; validate-only pods and trainer pods on kwok), and watches from outside when each job's
  trainer Job appears. Then, once the namespace is quiet, it reads the operator's reconcile counter
  (`fto_operator_reconciles_total{kind}`) over a steady window: a flat counter means unchanged
  objects are not reconciled again. `--steady-seconds` defaults to more than the operator's 60 s
  resync, so a periodic resync shows up too.
- bare client (bench/bare_client.py, a subprocess with as many threads as the operator has workers):
  the same burst, the same watcher; per job it creates the validate pod (the operator's builder), waits
  for it by watch and creates the trainer Job (the operator's builder): the limit of this cluster for
  this work, with no operator logic.
Each operator result carries its bare-client run and the ratios (Jobs/s and p50 create->Job, operator
over bare client). `--workers 1` stays the operator's own baseline (p50SpeedupOverBaseline).

`--objects N`: N FineTuneJobs already there when the operator starts: 10 % of them (`--running`)
still to train (the operator launches their trainer Jobs; as many run as the kwok nodes' 32 GPUs
allow, the others stay Queued), the rest Succeeded with the status the operator itself wrote for a
real (kwok) training, plus a loss curve of `--history-points` points as a long training leaves.
Reports the operator's RSS once it has counted a reconcile per object, launched every trainer Job
and its RSS has settled, and its reconciles in a steady window.

Prints JSON only on stdout (the cluster's progress goes to stderr).

usage: .venv/bin/python bench/operator_scale.py [--sizes 100,1000] [--workers 1,4] [--objects 10000]
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import functools
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "hack"), str(ROOT / "bench")]

RECONCILES = "fto_operator_reconciles_total"
TARGETS = {"jobsPerSecondRatioAtLeast": 0.5, "p50RatioAtMost": 2.0, "steadyStateReconciles": 0,
           "objectsRssMiBBelow": 300}


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def proc_mib(pid: int, field: str = "VmHWM") -> float:
    """VmHWM (peak resident memory) or VmRSS (now) of a process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def reconcile_counts(metrics_text: str):
    """{kind: count} of fto_operator_reconciles_total in a /metrics page; None when the counter has no samples."""
    counts = {}
    for line in metrics_text.splitlines():
        if not line.startswith(RECONCILES + "{") and not line.startswith(RECONCILES + " "):
            continue
        labels, _, value = line.rpartition(" ")
        kind = labels.partition('kind="')[2].partition('"')[0] or "all"
        counts[kind] = counts.get(kind, 0.0) + float(value)
    return counts or None


def latency_summary(created: dict, seen: dict, t0: float) -> dict:
    """created: job name -> when its create returned; seen: trainer Job name -> when the watch saw it."""
    from finetune_operator.builders.trainer_job import job_name

    latencies = [seen[job_name(name, 1)] - t for name, t in created.items() if job_name(name, 1) in seen]
    last = max((seen[job_name(name, 1)] for name in created if job_name(name, 1) in seen), default=t0)
    return {"jobsCreated": len(latencies),
            "createToJobSecondsP50": round(statistics.median(latencies), 2) if latencies else None,
            "createToJobSecondsP99": round(percentile(latencies, 99), 2) if latencies else None,
            "jobsPerSecond": round(len(latencies) / (last - t0), 2) if latencies else 0.0}


def ratios(operator: dict, bare: dict) -> dict:
    """The operator as a fraction of the bare client: Jobs/s (higher is better), p50/p99 (lower is better)."""
    def ratio(a, b):
        return round(a / b, 2) if a is not None and b else None

    out = {"jobsPerSecond": ratio(operator["jobsPerSecond"], bare["jobsPerSecond"]),
           "createToJobP50": ratio(operator["createToJobSecondsP50"], bare["createToJobSecondsP50"]),
           "createToJobP99": ratio(operator["createToJobSecondsP99"], bare["createToJobSecondsP99"])}
    out["meetsJobsPerSecondTarget"] = (out["jobsPerSecond"] is not None
                                       and out["jobsPerSecond"] >= TARGETS["jobsPerSecondRatioAtLeast"])
    out["meetsP50Target"] = out["createToJobP50"] is not None and out["createToJobP50"] <= TARGETS["p50RatioAtMost"]
    return out


class NamespaceWatch:
    """The namespace seen from outside either client: when each Job first appeared, each FineTuneJob's
    phase, and when any FineTuneJob, Job or Pod changed."""

    def __init__(self, api, namespace: str):
        from kubernetes import client

        from fakejobs import GROUP, VERSION

        core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
        self.listers = {
            "FineTuneJob": lambda **k: custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs",
                                                                            **k),
            "Job": lambda **k: batch.list_namespaced_job(namespace, **k),
            "Pod": lambda **k: core.list_namespaced_pod(namespace, **k),
        }
        self.job_seen: dict = {}
        self.phases: dict = {}
        self.changed: dict = {kind: [] for kind in self.listers}
        self.stop = threading.Event()

    def start(self) -> "NamespaceWatch":
        from bare_client import watch_raw

        listed = threading.Barrier(len(self.listers) + 1)
        for kind, list_fn in self.listers.items():
            threading.Thread(target=watch_raw, args=(list_fn, functools.partial(self._on, kind), self.stop,
                                                     listed.wait), daemon=True).start()
        listed.wait()
        return self

    def _on(self, kind: str, _type: str, obj: dict) -> None:
        now = time.monotonic()
        self.changed[kind].append(now)
        if kind == "Job":
            self.job_seen.setdefault(obj["metadata"]["name"], now)
        elif kind == "FineTuneJob":
            self.phases[obj["metadata"]["name"]] = (obj.get("status") or {}).get("phase") or "(none)"

    def changes(self, t0: float, t1: float) -> dict:
        return {kind: sum(1 for t in list(times) if t0 <= t < t1) for kind, times in self.changed.items()}

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Waits until nothing changed for `quiet` seconds; False if it never got that quiet."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = max((times[-1] for times in self.changed.values() if times), default=0.0)
            if time.monotonic() - last >= quiet:
                return True
            time.sleep(0.5)
        return False


class BareClientProcess:
    """bench/bare_client.py as a subprocess, started and measured like the operator's process."""

    def __init__(self, cluster, namespace: str, threads: int, log_path: Path, env: dict):
        self.cmd = [sys.executable, str(ROOT / "bench" / "bare_client.py"), "--namespace", namespace,
                    "--threads", str(threads)]
        self.env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), **env)
        self.log_path = log_path
        self.proc = None

    def start(self, timeout: float = 60) -> "BareClientProcess":
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"bare client did not start: {self.log_path.read_text()[-2000:]}")
        return self

    def stop(self) -> dict:
        self.proc.terminate()
        try:
            out = self.proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {}
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def new_namespace(core, s3, label: str) -> tuple[str, str]:
    from kubernetes import client

    from fakejobs import setup_namespace

    namespace = f"bench-{label}-{uuid.uuid4().hex[:4]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            break
        except client.exceptions.ApiException:
            time.sleep(0.2)
    return namespace, setup_namespace(core, s3, namespace)


def delete_namespace(core, namespace: str) -> float:
    """Deletes the namespace and waits until it is gone, so the next run starts on a quiet cluster:
    deleting 1,000 jobs' objects keeps the apiserver and the garbage collector busy for minutes."""
    from kubernetes import client

    t_clean = time.monotonic()
    core.delete_namespace(namespace)
    while time.monotonic() - t_clean < 900:
        try:
            core.read_namespace(namespace)
        except client.exceptions.ApiException as err:
            if err.status == 404:
                break
        time.sleep(2)
    return round(time.monotonic() - t_clean, 1)


def create_burst(custom, layout, bucket: str, namespace: str, n: int, duration: str = "600s"):
    """Creates n FineTuneJobs one after the other; returns ({name: created at}, seconds, start)."""
    from fakejobs import GROUP, VERSION, finetunejob

    created: dict = {}
    t0 = time.monotonic()
    for i in range(n):
        name = f"j{i:04d}"
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs",
                                               finetunejob(layout, bucket, name, duration=duration),
                                               _preload_content=False)
        created[name] = time.monotonic()
    return created, round(time.monotonic() - t0, 2), t0


def wait_for_jobs(watch: NamespaceWatch, names, timeout: float) -> bool:
    from finetune_operator.builders.trainer_job import job_name

    wanted = [job_name(name, 1) for name in names]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(w in watch.job_seen for w in wanted):
            return True
        time.sleep(0.5)
    return False


def operator_reconciles(operator):
    try:
        return reconcile_counts(operator.metrics(timeout=10))
    except OSError:
        return None


def steady_state(operator, watch: NamespaceWatch, seconds: float) -> dict:
    """The operator's reconciles over `seconds` once nothing in the namespace has changed for 5 s
    (or after 60 s, if it never gets that quiet), next to the object changes in the same window."""
    t_settle = time.monotonic()
    quiet = watch.wait_quiet(5.0, timeout=60.0)
    settled = round(time.monotonic() - t_settle, 1)
    before = operator_reconciles(operator)
    t0 = time.monotonic()
    time.sleep(seconds)
    t1 = time.monotonic()
    after = operator_reconciles(operator)
    out = {"windowSeconds": round(t1 - t0, 1), "settleSeconds": settled, "quietBeforeWindow": quiet,
           "objectChangesInWindow": watch.changes(t0, t1),
           "finetuneJobPhases": dict(collections.Counter(watch.phases.values()))}
    if before is None or after is None:
        out["reconciles"] = None
        out["reconcilesNote"] = f"{RECONCILES} has no samples on the operator's /metrics: not measured"
    else:
        out["reconciles"] = {kind: round(after[kind] - before.get(kind, 0.0)) for kind in after}
        out["reconcilesPerSecond"] = round(sum(out["reconciles"].values()) / (t1 - t0), 2)
        out["meetsSteadyStateTarget"] = sum(out["reconciles"].values()) <= TARGETS["steadyStateReconciles"]
    return out


def run_burst(layout, api, s3, n: int, workers: int, bare: bool, steady_seconds: float) -> dict:
    """One measured run: the operator (or the bare client) with `workers` threads, N jobs in a burst."""
    from kubernetes import client

    from fakejobs import KWOK_SETTINGS
    from operator_process import OperatorProcess

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace, bucket = new_namespace(core, s3, f"{'bare' if bare else 'op'}-{n}-{workers}")
    watch = NamespaceWatch(api, namespace).start()
    log = Path(tempfile.mkdtemp(prefix="fto-bench-log-")) / ("bare_client.log" if bare else "operator.log")
    if bare:
        proc = BareClientProcess(layout, namespace, workers, log, KWOK_SETTINGS).start()
    else:
        # One namespace: it gets every worker, as the bare client's threads do.
        proc = OperatorProcess(layout, [namespace], log, env=KWOK_SETTINGS,
                               args=("--workers", str(workers), "--max-workers-per-namespace", str(workers)))
        proc.start()
        proc.metrics()  # up and serving
    created, burst, t0 = create_burst(custom, layout, bucket, namespace, n)
    finished = wait_for_jobs(watch, created, timeout=max(300, n * 2))
    result = {"client": "bare" if bare else "operator", "jobs": n, ("threads" if bare else "workers"): workers,
              "burstSeconds": burst, **latency_summary(created, watch.job_seen, t0),
              ("clientPeakRssMiB" if bare else "operatorPeakRssMiB"): proc_mib(proc.proc.pid), "log": str(log)}
    if not bare:
        result["steadyState"] = (steady_state(proc, watch, steady_seconds) if finished else
                                 {"reconciles": None, "reconcilesNote": "the burst did not finish: not measured"})
    counts = proc.stop()
    if bare:
        result["counts"] = counts
    watch.stop.set()
    result["namespaceCleanupSeconds"] = delete_namespace(core, namespace)
    return result


def finished_template(layout, api, s3, namespace: str, bucket: str, history_points: int) -> tuple[str, dict]:
    """A FineTuneJob trained to Succeeded by the real operator (kwok trainer, real result in MinIO);
    returns its name and status, plus a loss curve of history_points points as a long training leaves."""
    from kubernetes import client

    from fakejobs import GROUP, KWOK_SETTINGS, VERSION, finetunejob, phase_is, upload_result
    from operator_process import OperatorProcess

    custom, name = client.CustomObjectsApi(api), "tmpl-0000"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", finetunejob(
        layout, bucket, name, duration="1s", result=upload_result(s3, bucket, name)))
    log = Path(tempfile.mkdtemp(prefix="fto-bench-log-")) / "template-operator.log"
    operator = OperatorProcess(layout, [namespace], log, env=KWOK_SETTINGS).start()
    try:
        deadline = time.monotonic() + 180
        while not phase_is(custom, namespace, name, "Succeeded", "Failed"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the template job did not finish in 180 s; operator log: {log}")
            time.sleep(1)
    finally:
        operator.stop()
    status = custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, "finetunejobs", name)["status"]
    if status.get("phase") != "Succeeded":
        raise RuntimeError(f"the template job ended {status.get('phase')}: {status.get('message')}; log: {log}")
    progress = status.setdefault("progress", {})
    steps = history_points * 10
    progress.update({"step": steps, "totalSteps": steps, "percent": 100, "display": f"{steps}/{steps}"})
    progress["history"] = [{"step": (i + 1) * 10, "trainLoss": round(2.5 * 0.995 ** i, 4),
                            "evalLoss": round(2.6 * 0.995 ** i, 4)} for i in range(history_points)]
    return name, status


def create_finished(api, layout, bucket: str, namespace: str, names: list, template: tuple[str, dict]) -> None:
    """FineTuneJobs with the template's status (its name replaced by theirs), 4 at a time."""
    from kubernetes import client

    from fakejobs import GROUP, VERSION, finetunejob

    custom = client.CustomObjectsApi(api)
    template_name, template_status = template
    status_text = json.dumps(template_status)

    def create(name):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs",
                                               finetunejob(layout, bucket, name), _preload_content=False)
        status = json.loads(status_text.replace(template_name, name))
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "finetunejobs", name,
                                                     {"status": status}, _preload_content=False,
                                                     _content_type="application/merge-patch+json")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create, names))


def wait_rss_settled(pid: int, window: float = 10.0, timeout: float = 120.0) -> bool:
    """Waits until the process's RSS moved less than 2 % over `window` seconds."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        samples = [(t, r) for t, r in samples if now - t <= window] + [(now, proc_mib(pid, "VmRSS"))]
        if now - samples[0][0] >= window * 0.9:
            values = [r for _, r in samples]
            if max(values) - min(values) <= 0.02 * max(values):
                return True
        time.sleep(1)
    return False


def wait_all_reconciled(operator, total: int, timeout: float) -> bool:
    """True once the reconcile counter has counted at least one pass per object (False if it is absent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = operator_reconciles(operator)
        if counts is None:
            return False
        if sum(counts.values()) >= total:
            return True
        time.sleep(1)
    return False


def run_objects(layout, api, s3, total: int, running: int, workers: int, history_points: int,
                steady_seconds: float) -> dict:
    """The operator started over `total` FineTuneJobs (`running` of them to launch, the rest finished)."""
    from kubernetes import client

    from fakejobs import KWOK_SETTINGS
    from finetune_operator.builders.trainer_job import job_name
    from operator_process import OperatorProcess

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace, bucket = new_namespace(core, s3, f"objects-{total}")
    watch = NamespaceWatch(api, namespace).start()
    template = finished_template(layout, api, s3, namespace, bucket, history_points)
    t_create = time.monotonic()
    finished = [f"f{i:05d}" for i in range(1, total - running)]
    create_finished(api, layout, bucket, namespace, finished, template)
    created, _, _ = create_burst(custom, layout, bucket, namespace, running, duration="3600s")
    create_seconds = round(time.monotonic() - t_create, 1)
    log = Path(tempfile.mkdtemp(prefix="fto-bench-log-")) / "operator.log"
    operator = OperatorProcess(layout, [namespace], log, env=KWOK_SETTINGS, args=("--workers", str(workers)))
    t_start = time.monotonic()
    operator.start()
    operator.metrics(timeout=120)
    launched = wait_for_jobs(watch, created, timeout=max(300, running * 2))
    launched_seconds = round(time.monotonic() - t_start, 1)
    all_reconciled = wait_all_reconciled(operator, total, timeout=120)
    settled = wait_rss_settled(operator.proc.pid)
    result = {"objects": total, "finished": len(finished) + 1, "running": running, "workers": workers,
              "historyPoints": history_points,
              "finishedStatusBytes": len(json.dumps(template[1])), "createSeconds": create_seconds,
              "runningLaunched": sum(1 for name in created if job_name(name, 1) in watch.job_seen),
              "allRunningLaunched": launched, "secondsToLaunchAllRunning": launched_seconds,
              "reconcilerCountedEveryObject": all_reconciled, "rssSettled": settled,
              "operatorRssMiB": proc_mib(operator.proc.pid, "VmRSS"),
              "operatorPeakRssMiB": proc_mib(operator.proc.pid, "VmHWM"), "log": str(log)}
    result["meetsRssTarget"] = result["operatorRssMiB"] < TARGETS["objectsRssMiBBelow"]
    result["steadyState"] = steady_state(operator, watch, steady_seconds)
    operator.stop()
    watch.stop.set()
    result["namespaceCleanupSeconds"] = delete_namespace(core, namespace)
    return result


def compare(results: list, first_workers: int) -> list:
    """Operator results with their bare-client run and ratios, and the old --workers baseline ratios."""
    bare = {(r["jobs"], r["threads"]): r for r in results if r["client"] == "bare"}
    operators = [r for r in results if r["client"] == "operator"]
    baseline = {r["jobs"]: r for r in operators if r["workers"] == first_workers}
    for r in operators:
        base = baseline[r["jobs"]]
        if base is not r and r["createToJobSecondsP50"] and base["createToJobSecondsP50"]:
            r["p50SpeedupOverBaseline"] = round(base["createToJobSecondsP50"] / r["createToJobSecondsP50"], 2)
            r["throughputRatioOverBaseline"] = round(r["jobsPerSecond"] / max(base["jobsPerSecond"], 1e-9), 2)
        if (r["jobs"], r["workers"]) in bare:
            r["bareClient"] = bare[(r["jobs"], r["workers"])]
            r["ratiosToBareClient"] = ratios(r, r["bareClient"])
    return operators


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=None, help="burst sizes (default 100,1000; none with --objects alone)")
    parser.add_argument("--workers", default="1,4", help="worker settings to compare (the first is the baseline)")
    parser.add_argument("--no-bare-client", action="store_true", help="skip the bare-client runs")
    parser.add_argument("--steady-seconds", type=float, default=65.0,
                        help="steady-state window after the burst (longer than the operator's 60 s resync)")
    parser.add_argument("--objects", type=int, default=0, help="also: operator RSS over this many FineTuneJobs")
    parser.add_argument("--running", type=int, default=None, help="of --objects, how many run (default 10 %%)")
    parser.add_argument("--history-points", type=int, default=200,
                        help="loss-curve points in each finished job's status (the operator keeps at most 200)")
    args = parser.parse_args()
    if args.sizes is None:
        args.sizes = "" if args.objects else "100,1000"
    if args.running is None:
        args.running = args.objects // 10
    return args


def run_all(args, layout, api, s3) -> dict:
    from fakejobs import KWOK_SETTINGS

    workers = [int(w) for w in args.workers.split(",")]
    results = []
    for n in [int(s) for s in args.sizes.split(",") if s]:
        for w in workers:
            results.append(run_burst(layout, api, s3, n, w, bare=False, steady_seconds=args.steady_seconds))
            if not args.no_bare_client:
                results.append(run_burst(layout, api, s3, n, w, bare=True, steady_seconds=0))
    out = {"benchmark": "operator_scale", "machineCores": os.cpu_count(), "targets": TARGETS,
           "operatorEnv": KWOK_SETTINGS, "results": compare(results, workers[0]) if results else []}
    if args.objects:
        out["objects"] = run_objects(layout, api, s3, args.objects, args.running, workers[-1],
                                     args.history_points, args.steady_seconds)
    return out


def main() -> None:
    args = parse_args()
    os.environ.setdefault("FTO_PORT_BASE", "7000")
    os.environ.setdefault("FTO_CLUSTER_DIR", tempfile.mkdtemp(prefix="fto-bench-"))
    import boto3
    from kubernetes import config

    from devcluster import cluster as devcluster, components
    from devcluster.layout import Layout

    layout = Layout.default()
    # The cluster's tools print status tables on stdout: until the JSON, fd 1 (inherited by every
    # subprocess too) is stderr.
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    started = not devcluster.status(layout)
    if started:
        devcluster.up(layout)
    try:
        subprocess_apply(layout)
        api = config.new_client_from_config(config_file=str(layout.kubeconfig))
        s3 = boto3.client("s3", endpoint_url=layout.s3_endpoint, aws_access_key_id=components.MINIO_USER,
                          aws_secret_access_key=components.MINIO_PASSWORD, region_name="us-east-1")
        out = run_all(args, layout, api, s3)
    finally:
        if started:
            devcluster.down(layout)
        sys.stdout.flush()
    json_out.write(json.dumps(out, indent=1) + "\n")
    json_out.close()


def subprocess_apply(layout) -> None:
    out = subprocess.run([str(layout.binary("KUBERNETES", "kubectl")), f"--kubeconfig={layout.kubeconfig}", "apply",
                          "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")], capture_output=True,
                         text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    time.sleep(2)  # Established


if __name__ == "__main__":
    main()
