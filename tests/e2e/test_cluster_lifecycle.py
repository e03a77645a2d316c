"""`hack/cluster up` then `down` on a second, private cluster: nothing of ours is left running."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubernetes import client, config

from helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found[int(entry.name)] = cmdline
    return found


def test_down_stops_every_process_it_started_including_pods(tmp_path):
    state = tmp_path / "cluster"
    env = dict(os.environ, FTO_CLUSTER_DIR=str(state), FTO_PORT_BASE="22000")
    cli = [sys.executable, "-m", "devcluster.cli"]
    up = subprocess.run(cli + ["up"], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        assert subprocess.run(cli + ["status"], env=env, capture_output=True).returncode == 0
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(state / "kubeconfig")))
        core.create_namespaced_pod("default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lingerer"},
            "spec": {"nodeSelector": {"fto.dev/process-node": "true"},
                     "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}})
        pod = wait_for(lambda: (p := core.read_namespaced_pod("lingerer", "default")).status.phase == "Running" and p,
                       what="the pod to run")
        pod_pid = int(pod.status.container_statuses[0].container_id.split("://")[1])
        assert _processes_mentioning(str(state)), "the cluster's processes should mention its state dir"
    finally:
        down = subprocess.run(cli + ["down", "--purge"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert _processes_mentioning(str(state)) == {}
    assert not Path(f"/proc/{pod_pid}/cmdline").exists() or Path(f"/proc/{pod_pid}/cmdline").read_bytes() == b""
    assert subprocess.run(cli + ["status"], env=env, capture_output=True).returncode == 1
