"""A replica that loses its Lease mid-pass stops before touching pods or writing status."""
from __future__ import annotations

import pytest

from finetune_operator.modelversion import agent_client
from finetune_operator.runtime.controller import LostLeadership, Runtime


class Elector:
    def __init__(self, leading: bool):
        self.is_leader = leading


def test_fence_raises_once_the_lease_is_gone():
    Runtime(None, [], Elector(True)).fence()
    with pytest.raises(LostLeadership):
        Runtime(None, [], Elector(False)).fence()


def test_lost_leadership_stops_a_fan_out_instead_of_counting_as_a_pod_failure():
    def call(pod):
        if pod == "b":
            raise LostLeadership("gone")
        return pod
    with pytest.raises(LostLeadership):
        agent_client.each(["a", "b", "c"], call)
    results = agent_client.each(["a"], lambda pod: (_ for _ in ()).throw(ValueError("boom")))
    assert results[0][2].reason == "AgentError"
