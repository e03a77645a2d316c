"""Which image names the process node can "run", and with what default entrypoint.

There is no container runtime: an image is a name for commands that are installed in the
project's Python environment (the same console scripts the Dockerfiles use as entrypoints).
"""
from __future__ import annotations

# Repository (registry and tag stripped) -> the image's ENTRYPOINT, as in its Dockerfile.
PROJECT_IMAGES = {
    "finetune-operator/operator": ["finetune-operator"],
    "finetune-operator/trainer": ["finetune-trainer"],
    "finetune-operator/inference-engine": ["finetune-engine"],
    "finetune-operator/adapter-agent": ["finetune-adapter-agent"],
}
# General-purpose images: their commands are run with this machine's tools. They have no
# entrypoint worth emulating, so a container of one of these must give `command`.
GENERIC_IMAGES = {"busybox", "alpine", "debian", "ubuntu", "bash", "python"}


class UnknownImage(ValueError):
    pass


def repository(image: str) -> str:
    """'ghcr.io/finetune-operator/trainer:0.1@sha256:..' -> 'finetune-operator/trainer'."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # a registry host
    if parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def entrypoint(image: str, command: list[str] | None, args: list[str] | None) -> list[str]:
    """The argv a container runs, following Kubernetes' command/args-over-ENTRYPOINT/CMD rules."""
    repo = repository(image)
    if repo in PROJECT_IMAGES:
        return list(command) + list(args or []) if command else PROJECT_IMAGES[repo] + list(args or [])
    if repo in GENERIC_IMAGES or repo.rsplit("/", 1)[-1] in GENERIC_IMAGES:
        if not command:
            raise UnknownImage(f"image {image!r} has no entrypoint on the process node: give the container a command")
        return list(command) + list(args or [])
    known = sorted(PROJECT_IMAGES) + sorted(GENERIC_IMAGES)
    raise UnknownImage(f"image {image!r} is not known to the process node (known: {', '.join(known)})")
