"""The process node runs an image as the same command its Dockerfile's ENTRYPOINT names."""
import json
import re
from pathlib import Path

import pytest

from devcluster.processnode.images import PROJECT_IMAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("repo, dockerfile", [("finetune-operator/operator", "operator/Dockerfile"),
                                              ("finetune-operator/trainer", "trainer_image/Dockerfile"),
                                              ("finetune-operator/inference-engine", "inference/Dockerfile.engine"),
                                              ("finetune-operator/adapter-agent", "inference/Dockerfile.agent")])
def test_dockerfile_entrypoint_is_the_process_node_command(repo, dockerfile):
    text = (ROOT / dockerfile).read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    assert entrypoint == PROJECT_IMAGES[repo]
    assert re.search(r"^USER \d+$", text, re.M), "the image must run as a non-root user"


def test_console_scripts_exist_for_every_entrypoint():
    import tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for argv in PROJECT_IMAGES.values():
        assert argv[0] in scripts


@pytest.mark.parametrize("dockerfile, component", [("operator/Dockerfile", "operator/"),
                                                   ("trainer_image/Dockerfile", "trainer_image/"),
                                                   ("inference/Dockerfile.engine", "inference/"),
                                                   ("inference/Dockerfile.agent", "inference/")])
def test_an_image_carries_only_the_api_package_and_its_own_component(dockerfile, component):
    text = (ROOT / dockerfile).read_text()
    copied = re.findall(r"^COPY (\S+) ", text, re.M)
    assert sorted(copied) == sorted(["api/", component])
    installs = " ".join(re.findall(r"pip install ([^&\n]+)", text))
    assert "./api" in installs and f"./{component.rstrip('/')}" in installs
