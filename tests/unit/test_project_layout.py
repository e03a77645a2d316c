"""Rules of the repository's shape that are easy to break without noticing."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_dir_is_not_a_package_that_would_shadow_stdlib_operator():
    assert not (ROOT / "operator" / "__init__.py").exists()
    import operator
    assert hasattr(operator, "itemgetter"), "the standard library's operator module is shadowed"


def test_project_packages_import_from_their_roots():
    import devcluster
    import finetune_operator
    import finetune_trainer
    assert Path(finetune_operator.__file__).parent.parent.name == "operator"
    assert Path(finetune_trainer.__file__).parent.parent.name == "trainer_image"
    assert Path(devcluster.__file__).parent.parent.name == "hack"
