"""The Prometheus URL allow-list policy and the operator's Prometheus settings, as rendered."""
from __future__ import annotations

import json

from chartlib import find, render


def _env(objs) -> dict:
    container = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_allow_list_holds_the_default_url_and_the_listed_ones_canonicalised():
    objs = render("--set", "operator.settings.prometheusUrl=http://Prom.monitoring:9090/",
                  "--set", "prometheus.allowedUrls={https://thanos.example:443/prom/}")
    policy = find(objs, "ValidatingAdmissionPolicy", "fto-finetune-operator-prometheus-urls")
    allowed = next(v for v in policy["spec"]["variables"] if v["name"] == "allowed")
    assert json.loads(allowed["expression"]) == ["http://prom.monitoring:9090", "https://thanos.example:443/prom"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    env = _env(objs)
    assert env["FTO_PROMETHEUS_ALLOWED_URLS"] == "https://thanos.example:443/prom/"
    assert env["FTO_PROMETHEUS_NAMESPACE_LABEL"] == "namespace"


def test_with_nothing_configured_every_explicit_prometheus_url_is_refused():
    policy = find(render(), "ValidatingAdmissionPolicy", "fto-finetune-operator-prometheus-urls")
    allowed = next(v for v in policy["spec"]["variables"] if v["name"] == "allowed")
    assert json.loads(allowed["expression"]) == []
    binding = find(render("--set", "admission.namespaceSelector.matchLabels.team=a"),
                   "ValidatingAdmissionPolicyBinding", "fto-finetune-operator-prometheus-urls")
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {"matchLabels": {"team": "a"}}


def test_the_namespace_label_is_configurable():
    assert _env(render("--set", "prometheus.namespaceLabel=kubernetes_namespace"))[
        "FTO_PROMETHEUS_NAMESPACE_LABEL"] == "kubernetes_namespace"
