"""What the adapter agent adds to a request: the same one-token base-model completion sent straight
to the reference engine and through the agent, alternating. No cluster needed: both run as local
processes on 127.0.0.1 (ports 18580/18500/18501).

Prints JSON (median and p90 per path, in ms).  usage: .venv/bin/python bench/inference_agent_overhead.py [--requests N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ENGINE, AGENT, ADMIN = 18580, 18500, 18501


def wait(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {url}")


def timed_post(url: str, body: dict) -> float:
    t0 = time.perf_counter()
    r = requests.post(url, json=body, timeout=120)
    r.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def summary(ms: list) -> dict:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 1), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True", FTO_AGENT_TOKEN="bench")
    bin_dir = os.path.dirname(sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        procs = [subprocess.Popen([f"{bin_dir}/finetune-engine", "--host", "127.0.0.1", "--port", str(ENGINE),
                                   "--threads", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                 subprocess.Popen([f"{bin_dir}/finetune-adapter-agent", "--host", "127.0.0.1", "--port", str(AGENT),
                                   "--admin-port", str(ADMIN), "--engine-url", f"http://127.0.0.1:{ENGINE}",
                                   "--adapter-dir", tmp], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)]
        try:
            wait(f"http://127.0.0.1:{AGENT}/readyz")
            base = requests.get(f"http://127.0.0.1:{ENGINE}/v1/models", timeout=5).json()["data"][0]["id"]
            body = {"model": base, "prompt": "The capital of France is", "max_tokens": 1, "temperature": 0}
            direct, via_agent = [], []
            for i in range(args.requests):
                (direct if i % 2 else via_agent).append(
                    timed_post(f"http://127.0.0.1:{ENGINE if i % 2 else AGENT}/v1/completions", body))
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    d, a = summary(direct), summary(via_agent)
    print(json.dumps({"requests_per_path": len(direct), "direct": d, "via_agent": a,
                      "agent_overhead_median_ms": round(a["median_ms"] - d["median_ms"], 1)}, indent=1))


if __name__ == "__main__":
    main()
