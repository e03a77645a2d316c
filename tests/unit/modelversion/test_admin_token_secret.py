"""The serving target's admin token comes only from an opted-in Secret (issue 13, finding 10): an
unlabelled one is never read into a request, and every serving pod's view says why."""
import json

import pytest

from finetune_operator import kube
from finetune_operator.modelversion import agent_client, observe

VALUE = "dG9wLXNlY3JldA=="  # "top-secret"


class Resp:
    def __init__(self, doc):
        self.data = json.dumps(doc).encode()


class Core:
    def __init__(self, labels):
        self.labels = labels

    def read_namespaced_secret(self, name, ns, **_):
        return Resp({"metadata": {"name": name, "labels": self.labels}, "data": {"token": VALUE}})

    def list_namespaced_pod(self, ns, **_):
        return Resp({"items": [{"metadata": {"name": "serve-0"}, "status": {
            "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}]})


def version():
    return {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": "bot-v1", "namespace": "team-a", "generation": 1},
            "spec": {"model": "bot", "version": "v1", "adapter": {"uri": "s3://b/a/", "digest": "sha256:" + "0" * 64},
                     "servingTarget": {"selector": {"matchLabels": {"app": "bot"}},
                                       "adminTokenSecretRef": {"name": "agent-token", "key": "token"}}}}


@pytest.mark.parametrize("labels, token, calls_agents", [
    ({}, "", False),
    ({"finetune.fto.dev/credentials": "true"}, "top-secret", True),
])
def test_the_admin_token_is_read_only_from_an_opted_in_secret(monkeypatch, labels, token, calls_agents):
    monkeypatch.setattr(kube, "core", lambda: Core(labels))
    called = []
    monkeypatch.setattr(agent_client, "each", lambda pods, fn: called.append(pods) or [])
    obs = observe.Observer(version(), settings=None)
    views = obs.views()
    assert obs.token() == token and bool(called) == calls_agents
    if not calls_agents:
        assert [v.pod.name for v in views] == ["serve-0"]
        assert "spec.servingTarget.adminTokenSecretRef" in views[0].error
        assert "finetune.fto.dev/credentials" in views[0].error and "top-secret" not in views[0].error
