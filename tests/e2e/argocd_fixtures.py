"""Records real FineTuneJob/ModelVersion objects from e2e runs as fixtures for the Argo CD
health-check tests (tests/unit/argocd). Only when FTO_RECORD_FIXTURES=1, so CI never rewrites
tracked files."""
from __future__ import annotations

import json
import os
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "argocd" / "fixtures"


def record(obj: dict, name: str) -> None:
    if os.environ.get("FTO_RECORD_FIXTURES") != "1":
        return
    meta = obj.get("metadata", {})
    kept = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "metadata": {k: meta[k] for k in ("name", "namespace", "generation", "creationTimestamp") if k in meta},
            "spec": obj.get("spec", {}), "status": obj.get("status")}
    kept["metadata"]["namespace"] = "team-a"  # the test namespace's random name says nothing
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.json").write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
