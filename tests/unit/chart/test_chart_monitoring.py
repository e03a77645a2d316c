"""The Grafana dashboard and Prometheus rules: valid PromQL (parsed by promtool), only contract
metric names, the chart's copies identical to deploy/monitoring/, and the alerts firing."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from chartlib import CHART, ROOT
from metric_contract import SERIES, metric_names, recorded_names

MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "finetune-operator-dashboard.json"
RULES = MONITORING / "rules.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")


def dashboard_exprs() -> dict[str, str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = {f"{p['title']} [{t['refId']}]": t["expr"] for p in board["panels"] for t in p.get("targets", [])}
    exprs.update({f"annotation {a['name']}": a["expr"] for a in board["annotations"]["list"] if "expr" in a})
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            exprs[f"variable {var['name']}"] = re.fullmatch(r"label_values\((.*), \w+\)", var["query"]).group(1) \
                if "," in var["query"] else var["query"][len("label_values("):-1]
    return exprs


def grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by values Prometheus accepts, so promtool can parse the query."""
    return (expr.replace("$__rate_interval", "5m").replace("$__range", "1d")
            .replace('"$namespace"', '".*"').replace('"$job"', '".*"'))


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_the_chart_ships_identical_copies_of_the_dashboard_and_rules():
    assert (CHART / "files" / "dashboards" / "finetune-operator.json").read_bytes() == DASHBOARD.read_bytes()
    assert (CHART / "files" / "prometheus" / "rules.yaml").read_bytes() == RULES.read_bytes()


def test_the_dashboard_covers_what_platform_teams_watch():
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    for wanted in ("Jobs by phase", "Queue wait", "GPU-hours per namespace", "Train loss", "Eval loss",
                   "Promotions and rollbacks", "Inference error rate by adapter version"):
        assert any(t.startswith(wanted) for t in titles), wanted


@pytest.mark.parametrize("where, expr", sorted(dashboard_exprs().items()))
def test_every_dashboard_query_names_only_contract_metrics(where, expr):
    names = metric_names(expr)
    assert names, f"{where}: no fto_ metric in {expr}"
    assert names <= SERIES, f"{where}: not exported by any component: {sorted(names - SERIES)}"


def test_every_rule_names_only_contract_metrics_or_recorded_series():
    recorded = {r["record"] for r in rules() if "record" in r}
    for rule in rules():
        assert metric_names(rule["expr"]) <= SERIES, rule
        assert recorded_names(rule["expr"]) <= recorded, rule


def test_alerts_cover_stuck_jobs_failure_rate_and_rollbacks():
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert {"FineTuneJobStuck", "FineTuneJobsWaiting", "FineTuneJobFailureRateHigh", "ModelVersionRolledBack"} <= alerts


@needs_promtool
def test_promtool_accepts_the_rules():
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    group = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, expr in enumerate(dashboard_exprs().values())]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(group))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_alerts_fire_on_the_series_they_watch(tmp_path):
    """promtool's rule unit tests: synthetic series in, alerts out."""
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'fto_operator_rollbacks_total{namespace="team-a",model="bot",trigger="analysis"}',
                 "values": "0 0 1 1 1"},
                {"series": 'fto_trainer_step{namespace="team-a",job="stuck"}', "values": "5x50"},
                {"series": 'fto_trainer_total_steps{namespace="team-a",job="stuck"}', "values": "100x50"},
                {"series": 'fto_trainer_step{namespace="team-a",job="moving"}', "values": "0+1x50"},
                {"series": 'fto_trainer_total_steps{namespace="team-a",job="moving"}', "values": "100x50"},
                {"series": 'fto_operator_job_failures_total{namespace="team-b",reason="DatasetInvalid"}',
                 "values": "0 1 2 3 4"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "ModelVersionRolledBack", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "namespace": "team-a", "model": "bot", "trigger": "analysis"},
                    "exp_annotations": {
                        "summary": "Model team-a/bot was rolled back (analysis)",
                        "description": "kubectl finetune history bot -n team-a shows the restored version and the analysis that fired."}}]},
                {"eval_time": "40m", "alertname": "FineTuneJobStuck", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": "team-a", "job": "stuck"},
                    "exp_annotations": {
                        "summary": "FineTuneJob team-a/stuck made no progress in 30 minutes",
                        "description": "Stuck at step 5; look at the trainer's logs (kubectl finetune logs stuck -n team-a)."}}]},
                {"eval_time": "4m", "alertname": "FineTuneJobFailureRateHigh", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": "team-b"},
                    "exp_annotations": {"summary": "4 FineTuneJobs failed in team-b in the last hour",
                                        "description": "Failure reasons: fto:operator_job_failures:rate1h by reason."}}]},
            ],
        }],
    }
    path = tmp_path / "rules-test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
