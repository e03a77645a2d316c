"""The validate-only pod: checks the dataset on a CPU before any GPU is requested."""
from __future__ import annotations

from . import names, pod, trainer_config
from .settings import OperatorSettings


def validate_pod(ftj: dict, settings: OperatorSettings, *, config_digest: str = "") -> dict:
    """config_digest: trainer_config.digest of the config document the pod must find mounted (the
    reconciler always passes it)."""
    name = ftj["metadata"]["name"]
    tpl = pod.template(ftj, settings, "validate", ["train", "--validate-only"], gpus=0, scheduling=False,
                       extra_env=trainer_config.digest_env(config_digest))
    container = tpl["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": settings.validate_cpu, "memory": settings.validate_memory},
                              "limits": {"memory": settings.validate_memory}}
    tpl["spec"]["terminationGracePeriodSeconds"] = 30
    if settings.validate_node_selector:
        tpl["spec"]["nodeSelector"] = dict(settings.validate_node_selector)
    if settings.validate_tolerations:
        tpl["spec"]["tolerations"] = list(settings.validate_tolerations)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": names.child_name(name, "validate"), "namespace": ftj["metadata"]["namespace"],
                         "labels": tpl["metadata"]["labels"], "annotations": tpl["metadata"]["annotations"],
                         "ownerReferences": [names.owner_reference(ftj)]},
            "spec": tpl["spec"]}
