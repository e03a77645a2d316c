"""Fixtures for tests against the real local cluster.

The cluster is started once per test session, or reused when one is already healthy (then it
is left running). Each test gets its own namespace, deleted afterwards.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from devcluster import cluster as devcluster
from devcluster import components, kubeconfig
from devcluster.layout import Layout
from helpers import BASE_MODEL_URI, kubectl, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster() -> Layout:
    layout = Layout.default()
    already_up = devcluster.status(layout)
    if not already_up:
        devcluster.up(layout)
    yield layout
    if not already_up:
        devcluster.down(layout)


@pytest.fixture(scope="session")
def api(cluster):
    from kubernetes import config
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def core(api):
    from kubernetes import client
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def batch(api):
    from kubernetes import client
    return client.BatchV1Api(api)


@pytest.fixture
def namespace(core, request):
    from kubernetes import client
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are refused until the namespace's default ServiceAccount exists.
    wait_for(lambda: core.read_namespaced_service_account("default", name), what="default ServiceAccount")
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def s3(cluster):
    """boto3 on the cluster's MinIO. Buckets this session creates through this client are emptied
    and removed at its end (the shared base-model bucket stays), so repeated runs on one machine do
    not fill its disk. Only its own: another session on the same cluster keeps its buckets."""
    import boto3
    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint, aws_access_key_id=components.MINIO_USER,
                      aws_secret_access_key=components.MINIO_PASSWORD, region_name="us-east-1")
    created: set = set()
    s3.meta.events.register("provide-client-params.s3.CreateBucket",
                            lambda params, **_: created.add(params["Bucket"]))
    yield s3
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (created & existing) - {BASE_MODEL_URI.split("/")[2]}:
        _remove_bucket(s3, bucket)


def _remove_bucket(s3, bucket: str) -> None:
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=bucket)
    except Exception as err:  # noqa: BLE001 - clean-up must not fail the run
        print(f"could not remove bucket {bucket}: {err}")


@pytest.fixture
def user_api(cluster):
    """Makes an API client for a freshly minted user (client certificate) with the given groups."""
    from kubernetes import config

    def make(name: str, groups: tuple[str, ...] = ()):
        return config.new_client_from_config(config_file=str(kubeconfig.mint_user(cluster, name, groups)))
    return make


@pytest.fixture(scope="session")
def crds(cluster, api):
    """The project's CRDs installed from crds/ (server-side apply) and Established."""
    from kubernetes import client
    result = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    assert result.returncode == 0, result.stderr
    ext = client.ApiextensionsV1Api(api)
    for name in ("finetunejobs.finetune.fto.dev", "modelversions.finetune.fto.dev"):
        wait_for(lambda: any(c.type == "Established" and c.status == "True"
                             for c in ext.read_custom_resource_definition(name).status.conditions or []),
                 what=f"CRD {name} established")
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="session")
def base_model_uri(s3) -> str:
    """The default model (converted from its GGUF once) in this cluster's MinIO, uploaded once."""
    from finetune_trainer import s3 as s3mod
    from finetune_trainer.basemodel import prepare_default_model
    bucket, prefix = s3mod.parse_uri(BASE_MODEL_URI)
    try:
        s3.head_object(Bucket=bucket, Key=f"{prefix}config.json")
    except Exception:  # noqa: BLE001 - not uploaded to this cluster yet
        s3mod.upload_folder(prepare_default_model(), BASE_MODEL_URI.rstrip("/"), s3)
    return BASE_MODEL_URI
