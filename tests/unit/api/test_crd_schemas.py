"""The CRD schemas: documented, structural, generated files fresh, the chart's copy identical."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finetune_api import crdgen

ROOT = Path(__file__).resolve().parents[3]


def walk(node: dict, path: str):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if node.get("type") == "array":
        yield from walk(node["items"], f"{path}[]")


@pytest.mark.parametrize("crd", crdgen.crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_every_field_has_a_description_for_kubectl_explain(crd):
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [path for path, node in walk(root, "") if path not in (".metadata",) and not node.get("description")
               and not path.endswith("[]")]
    assert missing == []


@pytest.mark.parametrize("crd", crdgen.crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_strings_and_lists_are_bounded_so_cel_cost_stays_within_budget(crd):
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(root, ""):
        if node.get("type") == "string" and "enum" not in node and node.get("format") != "date-time":
            assert "maxLength" in node, f"{path} is an unbounded string"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} is an unbounded list"


@pytest.mark.parametrize("crd", crdgen.crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_crd_has_status_subresource_short_names_and_the_finetune_category(crd):
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert "finetune" in crd["spec"]["names"]["categories"]
    assert crd["spec"]["names"]["shortNames"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "phase", "conditions"} <= set(status)
    condition = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= set(condition)


def test_generated_files_are_fresh():
    stale = [str(p.relative_to(ROOT)) for p, text in crdgen.outputs().items() if not p.exists() or p.read_text() != text]
    assert stale == [], "run: python -m finetune_api.crdgen"


def test_chart_crds_do_not_drift_from_the_single_source():
    source = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (ROOT / "charts" / "finetune-operator" / "crds").glob("*.yaml")}
    assert source and chart == source


def test_crd_files_are_the_crds_the_code_describes():
    for crd in crdgen.crds():
        on_disk = yaml.safe_load(crdgen.crd_path(crd).read_text())
        assert on_disk == crd
