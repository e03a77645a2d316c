"""One whole pass (observe, decide, act) against a small in-memory API: a steady running job
creates nothing, re-posts no ConfigMap and writes no status; a new job creates each child once."""
from __future__ import annotations

import json

import pytest

from finetune_operator import kube
from finetune_operator.finetunejob import Reconciler
from finetune_operator.finetunejob import observe as observe_mod

from ftj_fixtures import SETTINGS, VALIDATED, cond, ftj, iso, job, pod


class Resp:
    def __init__(self, doc):
        self.data = json.dumps(doc).encode()


class Cluster:
    """Objects by (kind, name); every call is logged as (verb, kind)."""

    def __init__(self, objects):
        self.objects, self.calls = dict(objects), []

    def _read(self, kind, name):
        from kubernetes.client.exceptions import ApiException
        self.calls.append(("get", kind))
        if (kind, name) not in self.objects:
            raise ApiException(status=404)
        return Resp(self.objects[(kind, name)])

    def _create(self, kind, body):
        from kubernetes.client.exceptions import ApiException
        self.calls.append(("create", kind))
        if (kind, body["metadata"]["name"]) in self.objects:
            raise ApiException(status=409)
        self.objects[(kind, body["metadata"]["name"])] = body
        return Resp(body)

    def read_namespaced_pod(self, name, ns, **_):
        return self._read("Pod", name)

    def read_namespaced_config_map(self, name, ns, **_):
        return self._read("ConfigMap", name)

    def read_namespaced_job(self, name, ns, **_):
        return self._read("Job", name)

    def read_namespaced_secret(self, name, ns, **_):
        return self._read("Secret", name)

    def list_node(self, **_):
        self.calls.append(("list", "Node"))
        return Resp({"items": [{"metadata": {"name": "gpu-0", "labels": {}},
                                "status": {"allocatable": {"nvidia.com/gpu": "8"}}}]})

    def list_namespaced_pod(self, ns, label_selector="", **_):
        self.calls.append(("list", "Pod"))
        return Resp({"items": [o for (k, n), o in self.objects.items() if k == "TrainerPod"]})

    def create_namespaced_pod(self, ns, body, **_):
        return self._create("Pod", body)

    def create_namespaced_config_map(self, ns, body, **_):
        return self._create("ConfigMap", body)

    def create_namespaced_job(self, ns, body, **_):
        return self._create("Job", body)


@pytest.fixture
def cluster(monkeypatch):
    c = Cluster({})
    for name in ("core", "batch", "custom"):
        monkeypatch.setattr(kube, name, lambda: c)
    monkeypatch.setattr(observe_mod, "_progress", lambda ip, port: None)
    return c


def one_pass(obj):
    patch, events = {}, []
    requeue = Reconciler(obj, patch, lambda *e: events.append(e), SETTINGS).reconcile()
    return patch, events, requeue


def test_a_steady_running_job_creates_nothing_and_writes_no_status(cluster):
    import time
    now = time.time()
    cluster.objects.update({("Job", "bot-train-1"): job(active=1), ("TrainerPod", "p-0"): pod(started=now - 30)})
    status = {"phase": "Running", "reason": "Training", "message": "attempt 1 of 4 is running", "attempts": 1,
              "trainerJob": "bot-train-1", "startTime": iso(now - 30), "observedGeneration": 1,
              "gpuSeconds": 20.0, "gpuSecondsUpdatedAt": iso(now - 10),
              "conditions": [VALIDATED, cond("Running", "True", "Training", "attempt 1 of 4 is running")]}
    patch, events, requeue = one_pass(ftj(status=status))
    assert patch == {} and events == [] and requeue == SETTINGS.progress_interval_seconds
    assert [c for c in cluster.calls if c[0] == "create"] == []
    assert ("get", "ConfigMap") not in cluster.calls, "the ConfigMap is looked at only when a child needs it"


CREDS = {"secretRef": {"name": "s3"}}
OPTED_IN_SECRET = {"metadata": {"name": "s3", "labels": {"finetune.fto.dev/credentials": "true"}},
                   "data": {"AWS_ACCESS_KEY_ID": "aWQ=", "AWS_SECRET_ACCESS_KEY": "a2V5"}}


def test_a_new_job_creates_its_config_map_and_validate_pod_once(cluster):
    cluster.objects[("Secret", "s3")] = OPTED_IN_SECRET
    patch, events, _ = one_pass(ftj(credentials=CREDS))
    assert [c for c in cluster.calls if c[0] == "create"] == [("create", "ConfigMap"), ("create", "Pod")]
    assert patch["phase"] == "Validating" and patch["validationPod"] == "bot-validate"
    cluster.calls.clear()
    obj = ftj(status={**patch}, credentials=CREDS)
    patch, events, _ = one_pass(obj)
    assert [c for c in cluster.calls if c[0] == "create"] == [] and patch == {}
