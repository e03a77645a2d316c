"""Renders the chart with the project's own helm (built by hack/build-tools from its Go module)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from devcluster.layout import Layout

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "finetune-operator"


def helm() -> str:
    path = Layout.default().binary("HELM", "helm")
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run hack/build-tools")
    return str(path)


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(*args: str, release: str = "fto", namespace: str = "fto-system") -> list[dict]:
    """`helm template` -> the list of objects (empty documents dropped)."""
    out = run_helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objs: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in matches]}"
    return matches[0]


def kinds(objs: list[dict]) -> set[str]:
    return {o["kind"] for o in objs}
