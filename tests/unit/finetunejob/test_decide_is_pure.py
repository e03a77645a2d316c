"""decide needs no cluster, network or clock: every way out of the process raises here."""
from __future__ import annotations

import socket
import time

import pytest

from finetune_operator.finetunejob import decide as D

from ftj_fixtures import NOW, VALIDATED, Verified, cond, ftj, iso, job, pod, snapshot, termination


def _refuse(*_, **__):
    raise AssertionError("decide reached outside itself")


@pytest.fixture
def sealed(monkeypatch):
    for name in ("time", "monotonic", "sleep"):
        monkeypatch.setattr(time, name, _refuse)
    monkeypatch.setattr(socket, "socket", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    import kubernetes.client
    monkeypatch.setattr(kubernetes.client, "ApiClient", _refuse)


def test_decide_runs_with_no_cluster_network_or_clock(sealed):
    running = {"phase": "Running", "attempts": 1, "trainerJob": "bot-train-1", "startTime": iso(NOW - 60),
               "conditions": [VALIDATED, cond("Running", "True", "Training")]}
    result = termination("Succeeded", manifestUri="s3://out/bot/manifest.json")
    cases = [
        snapshot(ftj()),
        snapshot(ftj(status=running), job=job(active=1), pods=(pod(),), progress={"step": 1, "totalSteps": 2}),
        snapshot(ftj(status=running, output={"uri": "s3://o/", "registerModelVersion": {"model": "m"}}),
                 job=job(conditions=[("Complete", "")]), pods=(pod("Succeeded", result),),
                 verified=Verified(adapter_uri="s3://o/adapter", digest="sha256:1", manifest={}, files=1)),
        snapshot(ftj(status=running), job=job(conditions=[("Failed", "x")]), pods=(pod("Failed", "", 137),)),
    ]
    for s in cases:
        first, again = D.decide(s, NOW), D.decide(s, NOW)
        assert first == again  # same snapshot, same time: same decision
