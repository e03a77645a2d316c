"""Each component imports only the API package, its own package, the standard library and third-party
libraries: never another component's package. So the trainer image needs no operator, the operator
image no trainer, and a contract between them can only live in finetune_api.

Walks every import statement (module level and inside functions) with ast. Relative imports stay
inside the package by construction; the one computed import (the operator's controllers.py loading
its own modelversion subpackage) names its own package.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1].parent
API = "finetune_api"
# component folder -> its own top-level package
COMPONENTS = {"trainer_image/finetune_trainer": "finetune_trainer",
              "inference/finetune_inference": "finetune_inference",
              "operator/finetune_operator": "finetune_operator"}
PROJECT_PACKAGES = {API, "devcluster", *COMPONENTS.values()}
# What finetune_api may import at module level besides the standard library: its distribution
# depends on PyYAML only. Heavier libraries are imported inside the functions that need them.
API_THIRD_PARTY = {"yaml"}


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, absolute top-level module, at module level) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0], id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0], id(node) in top_level))
    return found


def foreign_imports(folder: str, own: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module, _ in imports(path):
            if module in PROJECT_PACKAGES and module not in (API, own):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("folder", sorted(COMPONENTS))
def test_a_component_imports_no_other_components_package(folder):
    assert foreign_imports(folder, COMPONENTS[folder]) == []


def test_the_api_package_imports_no_component_and_nothing_heavy_at_module_level():
    bad = []
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((ROOT / "api" / API).rglob("*.py")):
        for line, module, module_level in imports(path):
            if module in PROJECT_PACKAGES and module != API:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
            elif module_level and module not in stdlib | API_THIRD_PARTY | {API, "__future__"}:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module} at module level")
    assert bad == []


def test_the_walk_sees_imports_inside_functions_and_ignores_relative_ones(tmp_path):
    (tmp_path / "m.py").write_text("from . import x\nimport os.path\n\ndef f():\n    from finetune_trainer import s3\n")
    assert imports(tmp_path / "m.py") == [(2, "os", True), (5, "finetune_trainer", False)]
