import pytest

from devcluster.processnode import images


@pytest.mark.parametrize("image, repo", [
    ("ghcr.io/finetune-operator/trainer:0.1.0", "finetune-operator/trainer"),
    ("finetune-operator/trainer", "finetune-operator/trainer"),
    ("localhost:5000/finetune-operator/operator:dev@sha256:abc", "finetune-operator/operator"),
    ("docker.io/library/busybox:1.36", "busybox"),
    ("busybox", "busybox"),
])
def test_repository_strips_registry_tag_and_digest(image, repo):
    assert images.repository(image) == repo


def test_project_image_runs_its_entrypoint_with_args():
    assert images.entrypoint("ghcr.io/finetune-operator/trainer:1", None, ["--config", "c.yaml"]) == \
        ["finetune-trainer", "--config", "c.yaml"]


def test_command_replaces_entrypoint():
    assert images.entrypoint("finetune-operator/trainer", ["python", "-c"], ["print(1)"]) == ["python", "-c", "print(1)"]


def test_generic_image_needs_a_command():
    assert images.entrypoint("busybox", ["sh", "-c", "exit 3"], None) == ["sh", "-c", "exit 3"]
    with pytest.raises(images.UnknownImage, match="give the container a command"):
        images.entrypoint("busybox", None, None)


def test_unknown_image_is_refused_with_the_known_list():
    with pytest.raises(images.UnknownImage, match="not known to the process node.*finetune-operator/trainer"):
        images.entrypoint("nginx:1.27", ["nginx"], None)
