"""The trainer pod template shared by the validate-only pod and the trainer Job."""
from __future__ import annotations

from . import names, trainer_config
from . import scheduling as sched
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
        pod_spec.update(scheduling_fields(spec, ftj["metadata"].get("namespace", ""), settings.scheduling_policy))
    labels = {**names.labels(name, component), **(extra_labels or {})}
    extra = extra_pod_annotations(ftj, names.POD_ANNOTATIONS_ANNOTATION)
    if component == "trainer":
        extra.update(extra_pod_annotations(ftj, names.TRAINER_POD_ANNOTATIONS_ANNOTATION))
    ns = ftj["metadata"].get("namespace", "")
    extra = {k: v for k, v in extra.items() if sched.annotation_allowed(k, ns, settings.scheduling_policy)}
    annotations = {**extra, "prometheus.io/scrape": "true",
                   "prometheus.io/port": str(settings.metrics_port), names.FINETUNEJOB_ANNOTATION: name}
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec}


def extra_pod_annotations(ftj: dict, key: str) -> dict:
    """The FineTuneJob's annotation `key` (a JSON object of strings) as pod annotations; ignored if malformed."""
    return sched.parse_annotation_map((ftj["metadata"].get("annotations") or {}).get(key))


def scheduling_fields(spec: dict, namespace: str, policy) -> dict:
    """The pod spec's nodeSelector, tolerations, affinity and priorityClassName from spec.resources, keeping
    only what the namespace's scheduling policy allows. scheduling.refusal says the same in words for a
    condition; dropping here keeps the pod safe whatever path built it."""
    r = spec.get("resources") or {}
    allowed = sched.allowed_for(policy, namespace)
    out = {}
    selector = dict(r.get("nodeSelector") or {})
    if r.get("gpuProduct"):
        selector[GPU_PRODUCT_LABEL] = r["gpuProduct"]
    if allowed is not None:
        selector = {k: v for k, v in selector.items() if k in allowed["nodeSelectorKeys"]}
    if selector:
        out["nodeSelector"] = selector
    tolerations = [t for t in r.get("tolerations") or []
                   if t.get("key") and (allowed is None or t["key"] in allowed["tolerationKeys"])]
    if tolerations:
        out["tolerations"] = tolerations
    affinity = r.get("affinity")
    if affinity and not sched.spec_problems({"resources": {"affinity": affinity}}, namespace, policy):
        out["affinity"] = affinity
    pc = r.get("priorityClassName")
    if pc and (allowed is None or pc in allowed["priorityClassNames"]):
        out["priorityClassName"] = pc
    return out
