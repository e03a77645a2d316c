"""Pure translation of a pod's container into what to run: argv, environment, mounts.

`lookup(kind, namespace, name)` returns a Secret's or ConfigMap's decoded `data` (or None when
it does not exist); everything else comes from the pod dict itself. Errors a user can fix
raise ConfigError with the message kubelet would give (CreateContainerConfigError).
"""
from __future__ import annotations

import base64
import dataclasses
import re
from typing import Callable, Optional

from . import images

Lookup = Callable[[str, str, str], Optional[dict]]
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Mount:
    volume: str
    target: str
    read_only: bool
    sub_path: str = ""


@dataclasses.dataclass(frozen=True)
class ContainerPlan:
    name: str
    argv: list
    env: dict
    working_dir: str
    mounts: list
    termination_message_path: str
    fallback_to_logs: bool


def decode_data(obj: dict) -> dict:
    """Secret/ConfigMap dict (API JSON) -> {key: bytes}."""
    out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()} if obj.get("kind") == "Secret" \
        else {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    out.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    return out


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, unknown ones kept, $$ escapes."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, text)


def field_ref(pod: dict, path: str) -> str:
    meta, status, spec = pod["metadata"], pod.get("status") or {}, pod["spec"]
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return simple[path] or ""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    if path == "status.podIPs":
        return ",".join(ip["ip"] for ip in status.get("podIPs") or [])
    raise ConfigError(f"fieldRef {path!r} is not supported on the process node")


def _key_ref(lookup: Lookup, kind: str, namespace: str, ref: dict) -> Optional[str]:
    data = lookup(kind, namespace, ref["name"])
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        what = f'{kind.lower()} "{ref["name"]}"'
        raise ConfigError(f'{what} not found' if data is None else f'couldn\'t find key {ref["key"]} in {what}')
    return data[ref["key"]].decode()


def container_env(pod: dict, container: dict, lookup: Lookup, base: dict) -> dict:
    """base (the node's own variables) < envFrom < env, with $(VAR) expansion as kubelet does."""
    ns = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
        data = lookup(kind, ns, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        prefix = source.get("prefix", "")
        env.update({prefix + k: v.decode() for k, v in data.items()})
    for var in container.get("env") or []:
        if "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        src = var["valueFrom"]
        if "fieldRef" in src:
            value = field_ref(pod, src["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in src:
            value = _key_ref(lookup, "Secret", ns, src["secretKeyRef"])
        elif "configMapKeyRef" in src:
            value = _key_ref(lookup, "ConfigMap", ns, src["configMapKeyRef"])
        elif "resourceFieldRef" in src:
            value = _resource_field(container, src["resourceFieldRef"])
        else:
            raise ConfigError(f"env {var['name']}: valueFrom {sorted(src)} is not supported on the process node")
        if value is not None:
            env[var["name"]] = value
    return env


def _resource_field(container: dict, ref: dict) -> str:
    kind, _, name = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    return str(value) if value is not None else "0"


def plan_container(pod: dict, container: dict, lookup: Lookup, base_env: dict) -> ContainerPlan:
    env = container_env(pod, container, lookup, base_env)
    argv = images.entrypoint(container["image"], container.get("command"), container.get("args"))
    argv = [expand(a, env) for a in argv]
    volumes = {v["name"] for v in pod["spec"].get("volumes") or []}
    mounts = []
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volumes:
            raise ConfigError(f"volumeMount {m['name']!r} names no volume of the pod")
        mounts.append(Mount(m["name"], m["mountPath"], bool(m.get("readOnly")), m.get("subPath", "")))
    return ContainerPlan(
        name=container["name"], argv=argv, env=env, working_dir=container.get("workingDir") or "",
        mounts=mounts,
        termination_message_path=container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
    )
