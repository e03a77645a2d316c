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


# --- distributions: one per component, plus the root's development meta-install -------------------------------
import re  # noqa: E402
import tomllib  # noqa: E402

COMPONENT_PROJECTS = {"api": "finetune_api", "operator": "finetune_operator", "trainer_image": "finetune_trainer",
                      "inference": "finetune_inference"}


def project(folder: str = ".") -> dict:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]


def requirement_names(requirements) -> set:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def all_requirements(proj: dict) -> list:
    return list(proj.get("dependencies", [])) + [r for extra in (proj.get("optional-dependencies") or {}).values()
                                                 for r in extra]


def test_each_component_distribution_packages_exactly_its_own_package():
    for folder, package in COMPONENT_PROJECTS.items():
        find = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
        assert find["include"] == [f"{package}*"] and (ROOT / folder / find["where"][0] / package / "__init__.py").exists()


def test_the_api_distribution_depends_on_no_framework():
    assert requirement_names(all_requirements(project("api"))) <= {"pyyaml"}


def test_the_components_depend_on_the_api_distribution_and_not_on_each_other():
    names = {project(folder)["name"] for folder in COMPONENT_PROJECTS}
    for folder in COMPONENT_PROJECTS:
        if folder != "api":
            deps = requirement_names(all_requirements(project(folder)))
            assert "finetune-api" in deps and deps & names == {"finetune-api"}, folder


def test_the_dev_meta_install_has_every_components_requirements_and_console_scripts():
    root = project()
    root_requirements = set(all_requirements(root))
    for folder in COMPONENT_PROJECTS:
        proj = project(folder)
        missing = [r for r in all_requirements(proj) if not r.startswith("finetune-api") and r not in root_requirements]
        assert missing == [], f"{folder}/pyproject.toml requires {missing}, which the root pyproject.toml lacks"
        for script, target in (proj.get("scripts") or {}).items():
            assert root["scripts"].get(script) == target, script
