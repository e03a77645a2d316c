"""The chart's NetworkPolicies: metadata ranges denied to the operator and the pods it creates, and the
inference example's ports (agent admin port for the operator only, engine port for the pod only)."""
from __future__ import annotations

import pytest

from chartlib import find, render

METADATA_V4 = ["169.254.0.0/16", "100.100.100.200/32"]
METADATA_V6 = ["fe80::/10", "fd00:ec2::254/128"]
EGRESS_BUT_METADATA = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": METADATA_V4}},
                               {"ipBlock": {"cidr": "::/0", "except": METADATA_V6}}]}]


def policies(*args: str) -> dict:
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"]
            for o in render(*args) if o["kind"] == "NetworkPolicy"}


def test_by_default_the_operator_may_reach_anything_but_the_metadata_ranges():
    spec = policies()[("fto-system", "fto-finetune-operator")]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"] == EGRESS_BUT_METADATA


@pytest.mark.parametrize("args, namespaces", [
    ((), set()),  # cluster-wide and no namespaces listed: nowhere to put them
    (("--set", "operator.watchNamespaces={team-a,team-b}"), {"team-a", "team-b"}),
    (("--set", "operator.watchNamespaces={team-a}", "--set", "networkPolicy.denyMetadata.namespaces={team-a,team-c}"),
     {"team-a", "team-c"}),
])
def test_trainer_and_validate_pods_in_each_watched_or_listed_namespace_are_denied_the_metadata_ranges(args, namespaces):
    found = {ns: spec for (ns, name), spec in policies(*args).items() if name == "fto-finetune-operator-deny-metadata"}
    assert set(found) == namespaces
    for spec in found.values():
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "finetune-trainer",
                                                       "app.kubernetes.io/managed-by": "finetune-operator"}}
        assert spec["policyTypes"] == ["Egress"] and spec["egress"] == EGRESS_BUT_METADATA


def test_the_platform_teams_own_egress_rules_replace_the_default_for_the_operator():
    rule = {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}
    spec = policies("--set-json", f"networkPolicy.egress=[{str(rule).replace(chr(39), chr(34))}]")[
        ("fto-system", "fto-finetune-operator")]
    assert spec["egress"] == [rule]


def test_turning_the_metadata_deny_off_leaves_egress_open_as_before():
    spec = policies("--set", "networkPolicy.denyMetadata.enabled=false",
                    "--set", "operator.watchNamespaces={team-a}")
    assert spec_types(spec) == {("fto-system", "fto-finetune-operator"): ["Ingress"]}


def spec_types(specs: dict) -> dict:
    return {key: spec["policyTypes"] for key, spec in specs.items()}


def test_the_inference_example_admits_clients_the_operator_at_the_admin_port_and_only_itself_at_the_engine():
    spec = policies("--set", "inferenceExample.enabled=true")[("fto-system", "finetune-inference")]
    operator = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "finetune-operator",
                                                "app.kubernetes.io/instance": "fto",
                                                "app.kubernetes.io/component": "operator"}}}
    assert spec["podSelector"] == {"matchLabels": {"app": "finetune-inference"}}
    assert spec["ingress"] == [
        {"ports": [{"port": 8000, "protocol": "TCP"}]},
        {"ports": [{"port": 8001, "protocol": "TCP"}], "from": [operator]},
        {"ports": [{"port": 8080, "protocol": "TCP"}], "from": [{"podSelector": {"matchLabels": {"app": "finetune-inference"}}}]},
    ]


def test_the_inference_engine_and_agent_share_a_random_engine_key_no_one_else_is_given():
    objs = render("--set", "inferenceExample.enabled=true")
    engine, agent = find(objs, "Deployment", "finetune-inference")["spec"]["template"]["spec"]["containers"]
    engine_ref = next(e for e in engine["env"] if e["name"] == "VLLM_API_KEY")["valueFrom"]["secretKeyRef"]
    agent_ref = next(e for e in agent["env"] if e["name"] == "FTO_ENGINE_API_KEY")["valueFrom"]["secretKeyRef"]
    assert engine_ref == agent_ref == {"name": "finetune-inference-engine-key", "key": "key"}
    key = find(objs, "Secret", "finetune-inference-engine-key")["data"]["key"]
    assert key != find(render("--set", "inferenceExample.enabled=true"), "Secret", "finetune-inference-engine-key")[
        "data"]["key"], "a fresh install gets a fresh random key"
    token = find(objs, "Secret", "finetune-inference-agent-token")["data"]["token"]
    assert key != token
