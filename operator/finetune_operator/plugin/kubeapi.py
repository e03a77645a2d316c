"""The plugin's view of the cluster: the user's kubeconfig, context and namespace, like kubectl."""
from __future__ import annotations

import dataclasses
import os

from .errors import PluginError, explain

GROUP, VERSION = "finetune.fto.dev", "v1alpha1"
JOBS, VERSIONS = "finetunejobs", "modelversions"


@dataclasses.dataclass
class Cluster:
    api: object          # kubernetes.client.ApiClient
    namespace: str

    def custom(self):
        from kubernetes import client
        return client.CustomObjectsApi(self.api)

    def core(self):
        from kubernetes import client
        return client.CoreV1Api(self.api)

    def call(self, action: str, kind: str, name: str | None, fn, *args, namespace: str | None = None, **kwargs):
        """Runs an API call; an ApiException becomes a PluginError in plain words."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError
        try:
            return fn(*args, **kwargs)
        except ApiException as err:
            raise explain(err, action, kind, name, namespace or self.namespace) from None
        except HTTPError as err:
            raise PluginError(f"cannot reach the cluster to {action} {kind}: {err}") from None

    def get(self, plural: str, name: str, action: str = "get") -> dict:
        return self.call(action, _kind(plural), name, self.custom().get_namespaced_custom_object,
                         GROUP, VERSION, self.namespace, plural, name)

    def list(self, plural: str, all_namespaces: bool = False) -> list[dict]:
        if all_namespaces:
            listed = self.call("list", plural, None, self.custom().list_cluster_custom_object, GROUP, VERSION, plural,
                               namespace="all namespaces")
        else:
            listed = self.call("list", plural, None, self.custom().list_namespaced_custom_object,
                               GROUP, VERSION, self.namespace, plural)
        return listed.get("items", [])

    def patch(self, plural: str, name: str, body: dict, action: str) -> dict:
        return self.call(action, _kind(plural), name, self.custom().patch_namespaced_custom_object,
                         GROUP, VERSION, self.namespace, plural, name, body)


    def config_map_or_none(self, name: str, namespace: str | None = None):
        """A ConfigMap as a plain dict; None when it is absent or this user may not read it."""
        from kubernetes.client.exceptions import ApiException
        namespace = namespace or self.namespace
        try:
            return self.api.sanitize_for_serialization(self.core().read_namespaced_config_map(name, namespace))
        except ApiException as err:
            if err.status in (403, 404):
                return None
            raise explain(err, "read", "configmap", name, namespace) from None


def _kind(plural: str) -> str:
    return {JOBS: "finetunejob", VERSIONS: "modelversion"}.get(plural, plural)


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        if path is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.path.exists(
                os.path.expanduser("~/.kube/config")):
            config.load_incluster_config()
            api = client.ApiClient()
            default_ns = _incluster_namespace()
        else:
            first = path.split(os.pathsep)[0] if path else None
            api = config.new_client_from_config(config_file=first, context=context)
            default_ns = _context_namespace(first, context)
    except (ConfigException, FileNotFoundError) as err:
        raise PluginError(f"cannot load your kubeconfig ({path or '~/.kube/config'}): {err}") from None
    return Cluster(api=api, namespace=namespace or default_ns or "default")


def _context_namespace(path: str | None, context: str | None) -> str | None:
    from kubernetes import config
    contexts, active = config.list_kube_config_contexts(config_file=path)
    chosen = next((c for c in contexts if c["name"] == context), active) if context else active
    return (chosen or {}).get("context", {}).get("namespace")


def _incluster_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return None
