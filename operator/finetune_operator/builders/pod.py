"""The trainer pod template shared by the validate-only pod and the trainer Job."""
from __future__ import annotations

import json

from . import names, trainer_config
from .settings import OperatorSettings

GPU = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def _credentials_env(spec: dict) -> list:
    creds = spec.get("credentials")
    if not creds:
        return []
    ref = creds["secretRef"]
    env = [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
            "name": ref["name"], "key": ref.get("accessKeyIdKey", "AWS_ACCESS_KEY_ID")}}},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {
            "name": ref["name"], "key": ref.get("secretAccessKeyKey", "AWS_SECRET_ACCESS_KEY")}}},
    ]
    if ref.get("sessionTokenKey"):
        env.append({"name": "AWS_SESSION_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": ref["name"], "key": ref["sessionTokenKey"]}}})
    if creds.get("endpoint"):
        env.append({"name": "AWS_ENDPOINT_URL", "value": creds["endpoint"]})
    env.append({"name": "AWS_DEFAULT_REGION", "value": creds.get("region", "us-east-1")})
    return env


def resources(spec: dict, gpus: int) -> dict:
    r = spec.get("resources") or {}
    requests, limits = {}, {}
    if r.get("cpu") is not None:
        requests["cpu"] = str(r["cpu"])
    if r.get("memory") is not None:
        requests["memory"] = limits["memory"] = str(r["memory"])
    if gpus:
        requests[GPU] = limits[GPU] = str(gpus)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def template(ftj: dict, settings: OperatorSettings, component: str, args: list, gpus: int,
             scheduling: bool, extra_env: list = (), extra_labels: dict | None = None) -> dict:
    """A pod template: non-root, read-only root filesystem, no API token, S3 keys from the Secret."""
    name, spec = ftj["metadata"]["name"], ftj["spec"]
    config_map = names.child_name(name, "config")
    env = _credentials_env(spec) + [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "FTO_TRAINER_CONFIG_FILE", "value": f"{trainer_config.CONFIG_MOUNT}/{trainer_config.CONFIG_KEY}"},
        {"name": "FTO_TRAINER_IMAGE", "value": settings.trainer_image},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HOME", "value": settings.work_dir},
        *extra_env,
    ]
    volumes = [{"name": "config", "configMap": {"name": config_map}},
               {"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "config", "mountPath": trainer_config.CONFIG_MOUNT, "readOnly": True},
              {"name": "work", "mountPath": settings.work_dir}, {"name": "tmp", "mountPath": "/tmp"}]
    if gpus:  # NCCL needs more shared memory than a container's default 64 MiB
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "trainer", "image": settings.trainer_image, "imagePullPolicy": settings.image_pull_policy,
            "args": args, "env": env, "volumeMounts": mounts, "resources": resources(spec, gpus),
            "ports": [{"name": "metrics", "containerPort": settings.metrics_port}],
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
        }],
        "volumes": volumes,
    }
    if scheduling:
        r = spec.get("resources") or {}
        selector = dict(r.get("nodeSelector") or {})
        if r.get("gpuProduct"):
            selector[GPU_PRODUCT_LABEL] = r["gpuProduct"]
        if selector:
            pod_spec["nodeSelector"] = selector
        for key, field in (("affinity", "affinity"), ("tolerations", "tolerations"),
                           ("priorityClassName", "priorityClassName")):
            if r.get(field):
                pod_spec[key] = r[field]
    labels = {**names.labels(name, component), **(extra_labels or {})}
    extra = extra_pod_annotations(ftj, names.POD_ANNOTATIONS_ANNOTATION)
    if component == "trainer":
        extra.update(extra_pod_annotations(ftj, names.TRAINER_POD_ANNOTATIONS_ANNOTATION))
    annotations = {**extra, "prometheus.io/scrape": "true",
                   "prometheus.io/port": str(settings.metrics_port), names.FINETUNEJOB_ANNOTATION: name}
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec}


def extra_pod_annotations(ftj: dict, key: str) -> dict:
    """The FineTuneJob's annotation `key` (a JSON object of strings) as pod annotations; ignored if malformed."""
    raw = (ftj["metadata"].get("annotations") or {}).get(key)
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): str(v) for k, v in parsed.items()}
