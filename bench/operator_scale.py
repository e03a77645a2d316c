"""The operator under a burst of FineTuneJobs on kwok GPU nodes: create -> trainer Job latency.

Starts its own cluster (FTO_PORT_BASE=7000, a temporary state dir; your cluster is untouched),
then for each N and each worker setting: creates N FineTuneJobs as fast as the API takes them
in a fresh namespace, runs the real operator (a subprocess, validate-only pods and trainer pods
on kwok), and watches from outside when each job's trainer Job appears. Prints JSON: p50/p99
create->Job latency, jobs/s (Jobs created per second of the burst), and the operator's peak RSS.
`--workers 1` is the baseline the default (4 reconciles at once) is compared with, side by side.

usage: .venv/bin/python bench/operator_scale.py [--sizes 100,1000] [--workers 1,4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "hack")]


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_burst(layout, api, s3, n: int, workers: int) -> dict:
    from kubernetes import client, watch

    from fakejobs import GROUP, KWOK_SETTINGS, VERSION, finetunejob, setup_namespace
    from operator_process import OperatorProcess

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = f"bench-{n}-{workers}-{uuid.uuid4().hex[:4]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            break
        except client.exceptions.ApiException:
            time.sleep(0.2)
    bucket = setup_namespace(core, s3, namespace)
    job_seen: dict = {}
    stop = threading.Event()

    def watch_jobs():
        batch = client.BatchV1Api(api)
        while not stop.is_set():
            try:
                for event in watch.Watch().stream(batch.list_namespaced_job, namespace, timeout_seconds=2):
                    job_seen.setdefault(event["object"].metadata.name, time.monotonic())
                    if stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - an overloaded apiserver answers 504/410: watch again
                time.sleep(0.5)

    watcher = threading.Thread(target=watch_jobs, daemon=True)
    watcher.start()
    log = Path(tempfile.mkdtemp()) / "operator.log"
    operator = OperatorProcess(layout, [namespace], log, env=KWOK_SETTINGS, args=("--workers", str(workers)))
    operator.start()
    operator.metrics()  # up and serving
    created: dict = {}
    t0 = time.monotonic()
    for i in range(n):
        name = f"j{i:04d}"
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs",
                                               finetunejob(layout, bucket, name, duration="600s"))
        created[name] = time.monotonic()
    burst = time.monotonic() - t0
    deadline = time.monotonic() + max(300, n * 2)
    while time.monotonic() < deadline and len(job_seen) < n:
        time.sleep(0.5)
    rss = peak_rss_mib(operator.proc.pid)
    operator.stop()
    stop.set()
    latencies = [job_seen[f"{name}-train-1"] - t for name, t in created.items() if f"{name}-train-1" in job_seen]
    last = max(job_seen.values()) if job_seen else t0
    # The next run starts on a quiet cluster: deleting 1,000 jobs' objects keeps the apiserver and
    # the garbage collector busy for minutes, which would slow whichever run comes next.
    t_clean = time.monotonic()
    core.delete_namespace(namespace)
    while time.monotonic() - t_clean < 900:
        try:
            core.read_namespace(namespace)
        except client.exceptions.ApiException as err:
            if err.status == 404:
                break
        time.sleep(2)
    return {"jobs": n, "workers": workers, "jobsCreated": len(latencies), "burstSeconds": round(burst, 2),
            "namespaceCleanupSeconds": round(time.monotonic() - t_clean, 1),
            "createToJobSecondsP50": round(statistics.median(latencies), 2) if latencies else None,
            "createToJobSecondsP99": round(percentile(latencies, 99), 2) if latencies else None,
            "jobsPerSecond": round(len(latencies) / (last - t0), 2) if latencies else 0.0,
            "operatorPeakRssMiB": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--workers", default="1,4", help="worker settings to compare (the first is the baseline)")
    args = parser.parse_args()
    os.environ.setdefault("FTO_PORT_BASE", "7000")
    os.environ.setdefault("FTO_CLUSTER_DIR", tempfile.mkdtemp(prefix="fto-bench-"))
    import boto3
    from kubernetes import config

    from devcluster import cluster as devcluster, components
    from devcluster.layout import Layout

    layout = Layout.default()
    started = not devcluster.status(layout)
    if started:
        devcluster.up(layout)
    try:
        subprocess_apply(layout)
        api = config.new_client_from_config(config_file=str(layout.kubeconfig))
        s3 = boto3.client("s3", endpoint_url=layout.s3_endpoint, aws_access_key_id=components.MINIO_USER,
                          aws_secret_access_key=components.MINIO_PASSWORD, region_name="us-east-1")
        results = [run_burst(layout, api, s3, int(n), int(w))
                   for n in args.sizes.split(",") for w in args.workers.split(",")]
    finally:
        if started:
            devcluster.down(layout)
    baseline = {r["jobs"]: r for r in results if r["workers"] == int(args.workers.split(",")[0])}
    for r in results:
        base = baseline[r["jobs"]]
        if base is not r and r["createToJobSecondsP50"] and base["createToJobSecondsP50"]:
            r["p50SpeedupOverBaseline"] = round(base["createToJobSecondsP50"] / r["createToJobSecondsP50"], 2)
            r["throughputRatioOverBaseline"] = round(r["jobsPerSecond"] / max(base["jobsPerSecond"], 1e-9), 2)
    print(json.dumps({"benchmark": "operator_scale", "machineCores": os.cpu_count(), "results": results}, indent=1))


def subprocess_apply(layout) -> None:
    import subprocess
    out = subprocess.run([str(layout.binary("KUBERNETES", "kubectl")), f"--kubeconfig={layout.kubeconfig}", "apply",
                          "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")], capture_output=True,
                         text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    time.sleep(2)  # Established


if __name__ == "__main__":
    main()
