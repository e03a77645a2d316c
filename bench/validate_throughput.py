"""Validate-only throughput and peak memory at 10 MB, 100 MB and 1 GB, against the baseline a user would write.

For each size a synthetic chat JSONL (~1 KB rows of 2-3 turns, tests/e2e/synthetic_chat.py, generated
deterministically and streamed to MinIO as a multipart upload; reused when already there) in bucket
`bench`, then, each in its own subprocess, one at a time:
- ours: `finetune-trainer train --validate-only --config FILE` (the validate pod's command) with the
  data-safety gate off and/or on (`--gate off,on`; on = spec.dataSafety with PII, secrets and
  near-duplicates, all Warn);
- baseline: what a user writes by hand: the object downloaded, `datasets.load_dataset("json")`, then
  `.map(batched=True)` applying the same tokenizer's chat template (SmolLM2-135M-Instruct);
- old (`--old-tree DIR`, e.g. `mkdir /tmp/old && git archive HEAD trainer_image api | tar -x -C /tmp/old`):
  the same command run from another tree's trainer (PYTHONPATH), for a same-machine ratio.
Each run reports rows/s and MB/s over its whole wall time (what a user waits for: interpreter and
tokenizer start-up included; `startupSeconds`, measured once on a one-row file, says how much of it that
is) and its peak RSS (wait4's ru_maxrss of the process, and the largest sum of the RSS of the process
tree seen by psutil every 0.2 s: the larger of the two is peakRssBytes).

MinIO: the test cluster's (FTO_CLUSTER_DIR / FTO_PORT_BASE as for the e2e tests), or --endpoint.
Prints JSON only on stdout (progress on stderr).

    FTO_CLUSTER_DIR=/root/.cache/finetune-operator/test-cluster FTO_PORT_BASE=24000 \\
      .venv/bin/python bench/validate_throughput.py [--sizes 10MB,100MB,1GB] [--gate off,on] \\
      [--baseline on|off] [--old-tree /tmp/old --old-sizes 10MB,100MB]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "hack")]

import synthetic_chat  # noqa: E402

GENERATOR = "synthetic-chat-v1"
GATE = {"pii": {"action": "Warn"}, "secrets": {"action": "Warn"}, "nearDuplicates": {"action": "Warn"}}
TODAY = {"rowsPerSecond": 880, "peakRssGiB": 15.1, "at": "1.2 GB, 1.15 M rows (issue 14)"}
TARGETS = {"peakRssBytesAtMost": 1024 ** 3, "rowsPerSecondOverToday": 5.0, "rowsPerSecondOverBaseline": 1.0}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# --- data -------------------------------------------------------------------------------------
def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    from devcluster import components
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=components.MINIO_USER,
                        aws_secret_access_key=components.MINIO_PASSWORD, region_name="us-east-1",
                        config=Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 3}))


def dataset(s3, bucket: str, label: str, size: int) -> dict:
    """s3://bucket/chat-<label>.jsonl, generated once per (generator, size)."""
    key = f"chat-{label}.jsonl"
    try:
        meta = s3.head_object(Bucket=bucket, Key=key).get("Metadata") or {}
        if meta.get("generator") == GENERATOR and meta.get("target") == str(size):
            return {"uri": f"s3://{bucket}/{key}", "rows": int(meta["rows"]), "bytes": int(meta["bytes"]),
                    "sha256": meta["sha256"]}
    except Exception:  # noqa: BLE001 - not there yet
        pass
    t0 = time.monotonic()
    info = synthetic_chat.upload(s3, bucket, key, size, metadata={"generator": GENERATOR, "target": str(size)})
    # S3 metadata cannot be added after the fact: copy the object onto itself with the counts.
    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, MetadataDirective="REPLACE",
                   Metadata={"generator": GENERATOR, "target": str(size), "rows": str(info.rows),
                             "bytes": str(info.bytes), "sha256": info.sha256})
    log(f"uploaded {key}: {info.rows} rows, {info.bytes} bytes in {time.monotonic() - t0:.0f}s")
    return {"uri": f"s3://{bucket}/{key}", "rows": info.rows, "bytes": info.bytes, "sha256": info.sha256}


# --- measuring one subprocess -----------------------------------------------------------------
def measure(argv: list, env: dict, log_path: Path) -> dict:
    """Runs argv to completion: wall seconds, exit code, peak RSS (wait4 ru_maxrss and polled tree sum)."""
    import psutil
    t0 = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    peak_tree, done = 0, threading.Event()

    def poll() -> None:
        nonlocal peak_tree
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = 0
            try:
                for p in [root] + root.children(recursive=True):
                    total += p.memory_info().rss
            except psutil.Error:
                pass
            peak_tree = max(peak_tree, total)
            done.wait(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss * 1024  # kilobytes on Linux
    return {"seconds": round(wall, 2), "exitCode": proc.returncode, "ruMaxRssBytes": maxrss,
            "treeRssBytes": peak_tree, "peakRssBytes": max(maxrss, peak_tree)}


def rates(result: dict, data: dict, startup: float | None = None) -> dict:
    """Rates over the whole file; none for a run that did not finish it."""
    secs = result["seconds"]
    if result["exitCode"] != 0:
        return {"peakRssMiB": round(result["peakRssBytes"] / 2 ** 20, 1)}
    out = {"rowsPerSecond": round(data["rows"] / secs, 1), "mbPerSecond": round(data["bytes"] / 1e6 / secs, 2),
           "peakRssMiB": round(result["peakRssBytes"] / 2 ** 20, 1)}
    if startup is not None and secs > startup:
        out["rowsPerSecondAfterStartup"] = round(data["rows"] / (secs - startup), 1)
    return out


# --- the runs ---------------------------------------------------------------------------------
def trainer_config(workdir: Path, uri: str, model_dir: str, bucket: str, label: str, gate: bool) -> Path:
    spec = {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://unused/base-model/"},
            "dataset": {"uri": uri, "format": "chat"},
            "training": {"maxSteps": 1},
            "resources": {"gpusPerNode": 0},
            "output": {"uri": f"s3://{bucket}/out/{label}-{'gate' if gate else 'plain'}/"}}
    if gate:
        spec["dataSafety"] = GATE
    doc = {"job": {"namespace": "bench", "name": f"validate-{label.lower()}", "uid": "bench"}, "spec": spec,
           "runtime": {"baseModelPath": model_dir, "workDir": str(workdir / "work"),
                       "terminationMessagePath": str(workdir / "termination.json")}}
    path = workdir / "config.json"
    path.write_text(json.dumps(doc))
    return path


def run_trainer(endpoint: str, uri: str, model_dir: str, bucket: str, label: str, gate: bool,
                tree: Path | None = None) -> dict:
    from devcluster import components
    with tempfile.TemporaryDirectory(prefix="fto-bench-validate-") as tmp:
        workdir = Path(tmp)
        config = trainer_config(workdir, uri, model_dir, bucket, label, gate)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": components.MINIO_USER,
               "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD, "AWS_ENDPOINT_URL": endpoint,
               "AWS_DEFAULT_REGION": "us-east-1", "TOKENIZERS_PARALLELISM": "true"}
        if tree is not None:  # another tree's trainer (and API package) ahead of the installed one
            env["PYTHONPATH"] = os.pathsep.join([str(tree / "trainer_image"), str(tree / "api")])
        argv = [sys.executable, "-m", "finetune_trainer", "train", "--validate-only", "--config", str(config)]
        result = measure(argv, env, workdir / "log.txt")
        try:
            message = json.loads((workdir / "termination.json").read_text())
        except (OSError, ValueError):
            message = {}
        result["reason"] = message.get("reason")
        if result["exitCode"] != 0:
            result["message"] = (message.get("message") or "")[:300] or \
                (workdir / "log.txt").read_text(errors="replace")[-600:]
        stats = message.get("datasetStats") or {}
        result["validatedRows"] = stats.get("rows", 0) + stats.get("validation_rows", 0)
        if gate:  # whether the gate's counts reached the termination message's datasetStats
            result["gateReported"] = "safety" in stats
        if "safety" in stats:
            result["safety"] = {k: v.get("rows") for k, v in stats["safety"].items() if isinstance(v, dict) and "rows" in v}
        return result


BASELINE = r'''
import json, sys, tempfile, time, boto3
from datasets import load_dataset, disable_progress_bars
from transformers import AutoTokenizer
disable_progress_bars()
endpoint, bucket, key, model_dir = sys.argv[1:5]
tok = AutoTokenizer.from_pretrained(model_dir)
with tempfile.TemporaryDirectory(prefix="fto-bench-baseline-") as tmp:
    boto3.client("s3", endpoint_url=endpoint).download_file(bucket, key, f"{tmp}/data.jsonl")
    ds = load_dataset("json", data_files=f"{tmp}/data.jsonl", split="train", cache_dir=f"{tmp}/cache")
    ds = ds.map(lambda b: tok.apply_chat_template(b["messages"], tokenize=True, return_dict=True),
                batched=True, remove_columns=ds.column_names)
    print(json.dumps({"rows": len(ds)}))
'''


def run_baseline(endpoint: str, uri: str, model_dir: str) -> dict:
    from devcluster import components
    bucket, key = uri[len("s3://"):].split("/", 1)
    with tempfile.TemporaryDirectory(prefix="fto-bench-baseline-log-") as tmp:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": components.MINIO_USER, "AWS_SECRET_ACCESS_KEY": components.MINIO_PASSWORD,
               "AWS_DEFAULT_REGION": "us-east-1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
        result = measure([sys.executable, "-c", BASELINE, endpoint, bucket, key, model_dir], env, Path(tmp) / "log.txt")
        text = (Path(tmp) / "log.txt").read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if result["exitCode"] != 0 or not lines:
        result["message"] = text[-600:]
    else:
        result["validatedRows"] = json.loads(lines[-1])["rows"]
    return result


def bench_size(args, s3, model_dir: str, label: str, size: int, startup: dict) -> dict:
    data = dataset(s3, args.bucket, label, size)
    out = {"size": label, "bytes": data["bytes"], "rows": data["rows"], "uri": data["uri"]}
    for gate in args.gate:
        log(f"{label}: ours, gate {'on' if gate else 'off'}")
        r = run_trainer(args.endpoint, data["uri"], model_dir, args.bucket, label, gate)
        out["ours" + ("WithGate" if gate else "")] = {**r, **rates(r, data, startup.get("ours"))}
    if args.baseline:
        log(f"{label}: baseline (datasets.load_dataset + map)")
        r = run_baseline(args.endpoint, data["uri"], model_dir)
        out["baseline"] = {**r, **rates(r, data, startup.get("baseline"))}
    if args.old_tree and label in args.old_sizes:
        log(f"{label}: old trainer from {args.old_tree}")
        r = run_trainer(args.endpoint, data["uri"], model_dir, args.bucket, label, False, tree=Path(args.old_tree))
        out["old"] = {**r, **rates(r, data, startup.get("old"))}
    ours = out.get("ours") or out.get("oursWithGate")
    for other in ("baseline", "old"):
        if ours and other in out and out[other]["exitCode"] == 0 and ours["exitCode"] == 0:
            out[f"rowsPerSecondOver_{other}"] = round(ours["rowsPerSecond"] / out[other]["rowsPerSecond"], 2)
    if ours and ours["exitCode"] == 0:  # the figure, from a quieter machine: the old-tree ratio is the fair one
        out["rowsPerSecondOverToday"] = round(ours["rowsPerSecond"] / TODAY["rowsPerSecond"], 2)
    log(json.dumps(out))
    return out


def startup_seconds(args, s3, model_dir: str) -> dict:
    """Wall time on a one-row file: interpreter, imports, tokenizer, S3 client (and datasets' own set-up)."""
    s3.put_object(Bucket=args.bucket, Key="chat-1row.jsonl",
                  Body=next(synthetic_chat.lines(1)))
    uri = f"s3://{args.bucket}/chat-1row.jsonl"
    out = {"ours": run_trainer(args.endpoint, uri, model_dir, args.bucket, "1row", False)["seconds"]}
    if args.baseline:
        out["baseline"] = run_baseline(args.endpoint, uri, model_dir)["seconds"]
    if args.old_tree:
        out["old"] = run_trainer(args.endpoint, uri, model_dir, args.bucket, "1row", False, tree=Path(args.old_tree))["seconds"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10MB,100MB,1GB")
    parser.add_argument("--gate", default="off,on", help="off, on or off,on: the data-safety gate")
    parser.add_argument("--baseline", default="on", choices=("on", "off"))
    parser.add_argument("--old-tree", help="a tree holding another trainer_image/ and api/ to compare with")
    parser.add_argument("--old-sizes", default="10MB,100MB", help="sizes the old trainer runs at")
    parser.add_argument("--bucket", default="bench")
    parser.add_argument("--endpoint", help="S3 endpoint (default: the test cluster's MinIO)")
    args = parser.parse_args()
    args.gate = [g.strip() == "on" for g in args.gate.split(",")]
    args.baseline = args.baseline == "on"
    args.old_sizes = set(args.old_sizes.split(","))
    if not args.endpoint:
        from devcluster.layout import Layout
        args.endpoint = Layout.default().s3_endpoint
    from finetune_trainer import s3 as s3mod
    from finetune_trainer.basemodel import prepare_default_model
    s3 = s3_client(args.endpoint)
    s3mod.ensure_bucket(s3, args.bucket)
    model_dir = str(prepare_default_model())
    startup = startup_seconds(args, s3, model_dir)
    results = [bench_size(args, s3, model_dir, label, synthetic_chat.parse_size(label), startup)
               for label in args.sizes.split(",")]
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      "startupSeconds": startup, "today": TODAY, "targets": TARGETS, "gateConfig": GATE,
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
