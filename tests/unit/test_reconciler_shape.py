"""The reconcilers stay small enough to read: observe -> decide -> act, no function over 60 lines."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECONCILERS = [ROOT / "operator" / "finetune_operator" / "finetunejob",
               ROOT / "operator" / "finetune_operator" / "modelversion"]
LIMIT = 60


def long_functions(folder: Path) -> list:
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


@pytest.mark.parametrize("folder", RECONCILERS, ids=[p.name for p in RECONCILERS])
def test_no_reconciler_function_is_over_60_lines(folder):
    assert long_functions(folder) == []


@pytest.mark.parametrize("folder", RECONCILERS, ids=[p.name for p in RECONCILERS])
def test_each_reconciler_has_observe_decide_and_act(folder):
    assert {"observe.py", "decide.py", "act.py"} <= {p.name for p in folder.glob("*.py")}
