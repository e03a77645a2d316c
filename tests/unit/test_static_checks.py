"""pyflakes over the project's Python: an undefined name is a crash waiting on a rare path
(an error handler, a retry), and an unused import is dead weight in a small module."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREES = ["api/finetune_api", "operator/finetune_operator", "trainer_image/finetune_trainer", "inference/finetune_inference",
         "hack/devcluster", "tests", "bench"]


def python_files() -> list[Path]:
    return sorted(p for tree in TREES for p in (ROOT / tree).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("tree", TREES)
def test_pyflakes_finds_nothing(tree):
    from pyflakes import api, reporter

    class Collect(reporter.Reporter):
        def __init__(self):
            self.found = []

        def unexpectedError(self, filename, message):
            self.found.append(f"{filename}: {message}")

        def syntaxError(self, filename, message, lineno, offset, text):
            self.found.append(f"{filename}:{lineno}: {message}")

        def flake(self, message):
            self.found.append(str(message))

    collect = Collect()
    for path in python_files():
        if path.is_relative_to(ROOT / tree):
            api.checkPath(str(path), collect)
    assert not collect.found, "\n".join(f.replace(str(ROOT) + "/", "") for f in collect.found)


def test_no_two_test_modules_share_a_file_name():
    """The test folders are not packages: pytest imports each module by its base name, so a second
    tests/**/test_x.py stops the whole run at collection ("import file mismatch")."""
    seen: dict = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
