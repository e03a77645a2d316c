"""Times `hack/cluster up` with warm binaries: from an empty state dir, and reusing the last state.

Prints JSON. Runs on its own state dir and ports (FTO_PORT_BASE=5000), so a cluster you have
running is not touched.  usage: .venv/bin/python bench/cluster_up.py [--runs N]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "devcluster.cli"]
    fresh, reused = [], []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, FTO_CLUSTER_DIR=str(Path(tmp) / "cluster"), FTO_PORT_BASE="5000",
                   PYTHONPATH=str(ROOT / "hack"))
        for _ in range(args.runs):
            fresh.append(timed(cli + ["up"], env))
            timed(cli + ["down"], env)
            reused.append(timed(cli + ["up"], env))
            timed(cli + ["down", "--purge"], env)
    print(json.dumps({
        "benchmark": "cluster_up_warm_binaries", "runs": args.runs, "cpus": os.cpu_count(),
        "fresh_state_s": {"median": round(statistics.median(fresh), 2), "min": round(min(fresh), 2),
                          "max": round(max(fresh), 2)},
        "reused_state_s": {"median": round(statistics.median(reused), 2), "min": round(min(reused), 2),
                           "max": round(max(reused), 2)},
        "reused_over_fresh": round(statistics.median(reused) / statistics.median(fresh), 2),
    }, indent=1))


if __name__ == "__main__":
    main()
