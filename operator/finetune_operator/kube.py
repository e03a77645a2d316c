"""The operator's Kubernetes client: in-cluster when running in a pod, else the kubeconfig."""
from __future__ import annotations

import functools
import json
import os


@functools.lru_cache(maxsize=1)
def api_client():
    from kubernetes import client, config
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config()


def core():
    from kubernetes import client
    return client.CoreV1Api(api_client())


def batch():
    from kubernetes import client
    return client.BatchV1Api(api_client())


def custom():
    from kubernetes import client
    return client.CustomObjectsApi(api_client())


def raw(resp) -> dict:
    """A _preload_content=False response as a plain dict (the API's own JSON, no model classes)."""
    return json.loads(resp.data)


def create_or_get(create, read, body: dict) -> dict:
    """Creates body; if it already exists (a restarted operator), returns the existing object."""
    from kubernetes.client.exceptions import ApiException
    try:
        return raw(create(body, _preload_content=False))
    except ApiException as err:
        if err.status != 409:
            raise
    return raw(read(body["metadata"]["name"], _preload_content=False))


def read_or_none(read, name: str):
    from kubernetes.client.exceptions import ApiException
    try:
        return raw(read(name, _preload_content=False))
    except ApiException as err:
        if err.status == 404:
            return None
        raise
