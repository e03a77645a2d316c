"""The trainer's config (finetune_trainer.config), rendered from a FineTuneJob into a ConfigMap."""
from __future__ import annotations

import hashlib
import json
from typing import Optional

from finetune_api import resume

from . import names
from .settings import OperatorSettings

CONFIG_KEY = "config.json"
CONFIG_MOUNT = "/etc/finetune"


# The sha256 of the config document, set by the operator in the validate pod and the trainer
# pods: the trainer refuses a config file that does not hash to it (finetune_trainer.config).
CONFIG_DIGEST_ENV = "FTO_TRAINER_CONFIG_SHA256"


def render(ftj: dict, settings: OperatorSettings) -> dict:
    """The config document. It holds nothing that changes per attempt (the attempt number is the
    pod's FTO_TRAINER_ATTEMPT), so one immutable ConfigMap serves every attempt."""
    meta = ftj["metadata"]
    return {
        "job": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
        "spec": ftj["spec"],
        # Resume only from the checkpoint the operator recorded and passes per attempt (resume_env).
        "runtime": {"metricsPort": settings.metrics_port, "workDir": settings.work_dir,
                    "resumePolicy": resume.RECORDED, **_moderation(ftj["spec"], settings)},
    }


def moderation_url(spec: dict, settings: OperatorSettings) -> Optional[str]:
    """The URL of the moderation endpoint spec.dataSafety.moderation names (the admin's list), or None
    when moderation is off or the name is not listed (preflight refuses that job before any pod)."""
    moderation = (spec.get("dataSafety") or {}).get("moderation") or {}
    if moderation.get("action", "Off") == "Off" or not moderation.get("endpoint"):
        return None
    return settings.moderation_endpoints.get(moderation["endpoint"])


def _moderation(spec: dict, settings: OperatorSettings) -> dict:
    url = moderation_url(spec, settings)
    return {"moderationUrl": url} if url else {}


def document(ftj: dict, settings: OperatorSettings) -> str:
    return json.dumps(render(ftj, settings), indent=1, sort_keys=True)  # ASCII: the bytes the trainer hashes


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_env(config_digest: str) -> list:
    return [{"name": CONFIG_DIGEST_ENV, "value": config_digest}] if config_digest else []


def config_map(ftj: dict, settings: OperatorSettings) -> dict:
    """Immutable: what the pods mount is what the operator wrote (a replacement must be a new object)."""
    name = ftj["metadata"]["name"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": names.child_name(name, "config"), "namespace": ftj["metadata"]["namespace"],
                     "labels": names.labels(name, "config"), "ownerReferences": [names.owner_reference(ftj)]},
        "immutable": True,
        "data": {CONFIG_KEY: document(ftj, settings)},
    }


def resume_env(status: dict) -> list:
    """The attempt's resume pointer (finetune_api.resume): the newest checkpoint in status.checkpoints
    with a digest, as the env the trainer reads; none recorded: no env (the trainer starts at step 0)."""
    ptr = resume.pointer(status.get("checkpoints"))
    return [{"name": resume.RESUME_ENV, "value": resume.encode(ptr)}] if ptr else []


def with_resume(job: dict, status: dict) -> dict:
    """A trainer Job body with the resume pointer added to its trainer container's env."""
    env = resume_env(status)
    if not env:
        return job
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container.get("env") or [] if e["name"] != resume.RESUME_ENV] + env
    return job
