from finetune_operator.modelversion import gates


def test_no_gates_pass():
    out = gates.evaluate(None, {"eval_loss": 1.0})
    assert out.passed and out.results == []


def test_metric_thresholds_report_numbers():
    out = gates.evaluate({"metrics": [{"metric": "eval_loss", "max": 2.0}, {"metric": "format_compliance", "min": 0.9}]},
                         {"eval_loss": 2.5, "format_compliance": 0.95})
    assert not out.passed
    loss, compliance = out.results
    assert loss == {"metric": "eval_loss", "value": 2.5, "passed": False, "message": "eval_loss 2.5 > max 2"}
    assert compliance["passed"] and compliance["value"] == 0.95
    assert "eval_loss 2.5 > max 2" in out.message


def test_missing_metric_fails_and_names_what_exists():
    out = gates.evaluate({"metrics": [{"metric": "bleu", "min": 0.3}]}, {"eval_loss": 1.0})
    assert not out.passed and "eval_loss" in out.results[0]["message"]


def test_must_beat_production_lower_is_better():
    spec = {"mustBeatProduction": {"metric": "eval_loss"}}
    assert gates.evaluate(spec, {"eval_loss": 1.0}, ("v1", {"eval_loss": 1.2})).passed
    worse = gates.evaluate(spec, {"eval_loss": 1.3}, ("v1", {"eval_loss": 1.2}))
    assert not worse.passed and "production v1 1.2" in worse.message
    assert not gates.evaluate(spec, {"eval_loss": 1.2}, ("v1", {"eval_loss": 1.2})).passed  # a tie does not beat


def test_must_beat_production_margin_and_direction():
    spec = {"mustBeatProduction": {"metric": "acc", "higherIsBetter": True, "minImprovement": 0.05}}
    assert gates.evaluate(spec, {"acc": 0.9}, ("v1", {"acc": 0.8})).passed
    assert not gates.evaluate(spec, {"acc": 0.82}, ("v1", {"acc": 0.8})).passed


def test_must_beat_without_production_passes():
    assert gates.evaluate({"mustBeatProduction": {"metric": "eval_loss"}}, {"eval_loss": 3.0}, None).passed


def test_must_beat_when_production_lacks_the_metric():
    out = gates.evaluate({"mustBeatProduction": {"metric": "eval_loss"}}, {"eval_loss": 1.0}, ("v1", {}))
    assert not out.passed and "v1 has no eval_loss" in out.message
