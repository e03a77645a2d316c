"""The Argo CD health checks (deploy/argocd/health/*.lua) run by lua5.1 on objects recorded from
e2e runs (fixtures/, written by tests/e2e/argocd_fixtures.py) and on variations of them."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from luaharness import HEALTH, ROOT, health, load

FIXTURES = Path(__file__).parent / "fixtures"
# The health Argo CD must show for each recorded object, by the phase in its file name
# (<kind>-<phase>[-progress].json; "new" is an object the operator has not touched yet).
RECORDED = {
    "finetunejob": {"new": "Progressing", "pending": "Progressing", "validating": "Progressing",
                    "queued": "Progressing", "running": "Progressing", "succeeded": "Healthy",
                    "suspended": "Suspended", "cancelled": "Degraded", "failed": "Degraded"},
    "modelversion": {"new": "Progressing", "pending": "Progressing", "registering": "Progressing",
                     "registered": "Healthy", "promoting": "Progressing", "production": "Healthy",
                     "archived": "Healthy", "rolledback": "Degraded", "failed": "Degraded"},
}


def expected(path: Path) -> str:
    kind, phase = path.stem.split("-")[:2]
    assert phase in RECORDED[kind], f"classify {path.name} in RECORDED"
    return RECORDED[kind][phase]


def script_for(obj: dict) -> str:
    return {"FineTuneJob": "finetunejob.lua", "ModelVersion": "modelversion.lua"}[obj["kind"]]


def recorded() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def test_there_are_recorded_objects_of_both_kinds():
    kinds = {load(p)["kind"] for p in recorded()}
    assert kinds == {"FineTuneJob", "ModelVersion"}, "record with FTO_RECORD_FIXTURES=1 (see argocd_fixtures.py)"


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
def test_recorded_objects_get_the_expected_health(path):
    obj = load(path)
    result = health(script_for(obj), obj)
    assert result["status"] == expected(path), result
    assert result["message"]


def _with_status(name: str, **changes) -> dict:
    obj = copy.deepcopy(load(FIXTURES / f"{name}.json"))
    obj["status"].update(changes)
    return obj


def test_a_running_job_shows_its_step_and_loss():
    obj = load(FIXTURES / "finetunejob-running-progress.json")
    message = health("finetunejob.lua", obj)["message"]
    assert message.startswith(f"Running: step {obj['status']['progress']['display']}")


def test_a_failed_job_is_degraded_with_its_reason():
    obj = _with_status("finetunejob-succeeded", phase="Failed", reason="DatasetInvalid",
                       message="line 2: not valid JSON")
    assert health("finetunejob.lua", obj) == {"status": "Degraded",
                                              "message": "Failed: DatasetInvalid: line 2: not valid JSON"}


@pytest.mark.parametrize("phase", ["Pending", "Validating", "Queued", "Running", "SomethingNew"])
def test_unfinished_job_phases_are_progressing(phase):
    assert health("finetunejob.lua", _with_status("finetunejob-succeeded", phase=phase))["status"] == "Progressing"


def test_status_of_an_older_generation_is_progressing_whatever_it_says():
    obj = load(FIXTURES / "finetunejob-succeeded.json")
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    result = health("finetunejob.lua", obj)
    assert result["status"] == "Progressing" and "generation" in result["message"]
    mv = load(FIXTURES / "modelversion-registered.json")
    mv["metadata"]["generation"] = mv["status"].get("observedGeneration", 1) + 1
    assert health("modelversion.lua", mv)["status"] == "Progressing"


@pytest.mark.parametrize("phase, expected", [
    ("Registered", "Healthy"), ("Production", "Healthy"), ("Archived", "Healthy"),
    ("Pending", "Progressing"), ("Registering", "Progressing"), ("Promoting", "Progressing"),
    ("RolledBack", "Degraded"), ("Failed", "Degraded"),
])
def test_model_version_phases(phase, expected):
    assert health("modelversion.lua", _with_status("modelversion-registered", phase=phase))["status"] == expected


def test_a_candidate_whose_gates_failed_is_degraded():
    obj = _with_status("modelversion-registered", phase="Registered", reason="GatesFailed", conditions=[
        {"type": "GatesPassed", "status": "False", "reason": "GatesFailed", "message": "eval_loss 0.9 > 0.5"}])
    assert health("modelversion.lua", obj) == {"status": "Degraded", "message": "GatesFailed: eval_loss 0.9 > 0.5"}


def test_a_rollback_names_the_restored_version():
    obj = _with_status("modelversion-registered", phase="RolledBack", reason="AnalysisFailed",
                       rollback={"restoredVersion": "v1"})
    assert health("modelversion.lua", obj)["message"].endswith("(restored v1)")


def test_the_argocd_cm_snippet_carries_the_scripts_verbatim():
    snippet = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm-health.yaml").read_text())
    data = snippet["data"]
    for kind, script in (("FineTuneJob", "finetunejob.lua"), ("ModelVersion", "modelversion.lua")):
        assert data[f"resource.customizations.health.finetune.fto.dev_{kind}"] == (HEALTH / script).read_text()
    docs = (ROOT / "docs" / "gitops.md").read_text()
    assert "resource.customizations.health.finetune.fto.dev_FineTuneJob" in docs


def test_fixtures_are_real_json_objects_with_status():
    for path in recorded():
        obj = json.loads(path.read_text())
        assert obj["apiVersion"] == "finetune.fto.dev/v1alpha1" and "spec" in obj
