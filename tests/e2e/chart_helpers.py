"""Helm against the local cluster, for the chart, RBAC and plugin e2e tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "finetune-operator"
# The operator pods run for real on the process node.
ON_PROCESS_NODE = ["--set-string", "operator.nodeSelector.fto\\.dev/process-node=true"]


def helm(cluster, *args: str, timeout: float = 180, input_: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(cluster.binary("HELM", "helm")), f"--kubeconfig={cluster.kubeconfig}", *args],
                          input=input_, capture_output=True, text=True, timeout=timeout)


def template(cluster, release: str, namespace: str, *args: str) -> str:
    result = helm(cluster, "template", release, str(CHART), "--namespace", namespace, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def operator_supports_chart_flags() -> bool:
    """The chart passes --leader-election-lease and --metrics-address; older operators refuse them."""
    result = subprocess.run([sys.executable, "-m", "finetune_operator", "--help"], capture_output=True, text=True, timeout=60)
    return "--leader-election-lease" in result.stdout and "--metrics-address" in result.stdout
