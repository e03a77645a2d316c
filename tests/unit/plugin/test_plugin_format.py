"""kubectl finetune: the text users read, the rollback choice and error wording (no cluster)."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from finetune_operator.plugin import format as fmt
from finetune_operator.plugin import plot, rollback
from finetune_operator.plugin.cli import parser
from finetune_operator.plugin.errors import PluginError, explain

NOW = dt.datetime(2026, 1, 2, 12, 0, 0, tzinfo=dt.timezone.utc)


def job(name="bot", phase="Running", **status):
    return {"metadata": {"name": name, "namespace": "team-a", "creationTimestamp": "2026-01-02T11:55:00Z"},
            "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://models/smollm2/"},
                     "dataset": {"uri": "s3://data/train.jsonl"}, "output": {"uri": "s3://out/bot/"}},
            "status": {"phase": phase, **status}}


def version(name, stage="candidate", phase="Registered", promoted=None, **status):
    return {"metadata": {"name": name, "creationTimestamp": f"2026-01-0{name[-1]}T00:00:00Z"},
            "spec": {"model": "bot", "version": name.split("-")[-1], "stage": stage},
            "status": {"phase": phase, **({"promotedAt": promoted} if promoted else {}), **status}}


class FakeApiError:
    def __init__(self, status, message=""):
        self.status, self.reason = status, "Reason"
        self.body = json.dumps({"message": message})


@pytest.mark.parametrize("seconds, text", [(None, "-"), (5, "5s"), (200, "3m20s"), (3600, "1h"), (7500, "2h5m"),
                                           (90000, "1d1h")])
def test_durations_read_like_kubectl_ages(seconds, text):
    assert fmt.duration(seconds) == text


def test_progress_line_shows_step_loss_throughput_and_eta():
    line = fmt.progress_line(job(progress={"step": 12, "totalSteps": 30, "trainLoss": 1.23456, "evalLoss": 1.3,
                                           "tokensPerSecond": 411.7, "etaSeconds": 80}), width=10)
    assert line == "[####......] 12/30 40% loss 1.235 eval 1.3 412 tok/s ETA 1m20s Running"


def test_progress_line_before_training_shows_the_phase_and_reason():
    assert fmt.progress_line(job(phase="Queued", reason="WaitingForCapacity"), width=4) == "[....] Queued (WaitingForCapacity)"


def test_finished_job_shows_no_eta():
    line = fmt.progress_line(job(phase="Succeeded", progress={"step": 30, "totalSteps": 30, "etaSeconds": 0}), width=4)
    assert line == "[####] 30/30 100% Succeeded"


def test_jobs_table_has_kubectl_columns_and_namespaces_when_asked():
    jobs = [job("b", progress={"display": "3/6", "trainLoss": 2.5}), job("a", phase="Succeeded", modelVersion="bot-v1")]
    lines = fmt.jobs_table(jobs, NOW).splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "PROGRESS", "LOSS", "EVAL", "MODEL", "VERSION", "AGE"]
    assert lines[1].split() == ["a", "Succeeded", "-", "-", "-", "smollm2-135m-instruct", "bot-v1", "5m"]
    assert lines[2].split() == ["b", "Running", "3/6", "2.5", "-", "smollm2-135m-instruct", "-", "5m"]
    assert fmt.jobs_table(jobs, NOW, all_namespaces=True).splitlines()[1].split()[0] == "team-a"


def test_describe_shows_conditions_checkpoints_result_and_lineage():
    text = fmt.describe_job(job(
        phase="Succeeded", trainerJob="bot-train-1", attempts=1,
        conditions=[{"type": "Validated", "status": "True", "reason": "DatasetValid", "message": "120 rows",
                     "lastTransitionTime": "2026-01-02T11:56:00Z"}],
        checkpoints=[{"step": 3, "uri": "s3://out/bot/checkpoints/step-3/"}],
        result={"adapterUri": "s3://out/bot/adapter", "adapterDigest": "sha256:abc", "metrics": {"eval_loss": 0.51}},
        lineage={"datasetEtag": "e1", "baseModelDigest": "sha256:base", "configHash": "c0ffee"}), NOW)
    assert "Phase:" in text and "Succeeded" in text
    assert "Validated   True     DatasetValid   4m" in text
    assert "s3://out/bot/checkpoints/step-3/" in text
    assert "metric eval_loss: 0.51" in text
    assert "Base model digest: sha256:base" in text and "Config hash:" in text


def test_history_lists_versions_oldest_first_with_promotions_and_metrics():
    lines = fmt.history_table([
        version("bot-v2", stage="production", phase="Production", promoted="2026-01-03T00:00:00Z",
                lineage={"metrics": {"eval_loss": 0.4}}),
        version("bot-v1", phase="RolledBack", promoted="2026-01-02T00:00:00Z", rolledBackAt="2026-01-02T06:00:00Z"),
    ], NOW).splitlines()
    assert lines[0].split()[:4] == ["VERSION", "NAME", "STAGE", "PHASE"]
    assert lines[1].split()[:6] == ["v1", "bot-v1", "candidate", "RolledBack", "2026-01-02T00:00:00Z", "2026-01-02T06:00:00Z"]
    assert "eval_loss=0.4" in lines[2]


def test_rollback_restores_the_version_promoted_before_the_current_one():
    versions = [version("bot-v1", promoted="2026-01-01T00:00:00Z", phase="Registered"),
                version("bot-v2", promoted="2026-01-02T00:00:00Z", phase="Registered"),
                version("bot-v3", stage="production", phase="Production", promoted="2026-01-03T00:00:00Z"),
                version("bot-v4")]
    assert rollback.previous_production(versions)["metadata"]["name"] == "bot-v2"


def test_rollback_refuses_when_nothing_was_promoted_before():
    only = [version("bot-v1", stage="production", phase="Production", promoted="2026-01-01T00:00:00Z"), version("bot-v2")]
    with pytest.raises(PluginError, match="first version ever promoted"):
        rollback.previous_production(only)
    with pytest.raises(PluginError, match="nothing to roll back"):
        rollback.previous_production([version("bot-v1")])


def test_plot_reads_the_loss_history_and_keeps_eval_changes_only():
    history = [{"step": 1, "trainLoss": 3.0}, {"step": 2, "trainLoss": 2.5, "evalLoss": 2.7},
               {"step": 3, "trainLoss": 2.0, "evalLoss": 2.7}, {"step": 4, "trainLoss": 1.8, "evalLoss": 2.1}]
    train, evals = plot.loss_points(job(progress={"history": history}))
    assert train == [(1, 3.0), (2, 2.5), (3, 2.0), (4, 1.8)]
    assert evals == [(2, 2.7), (4, 2.1)]


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "loss.png"
    assert plot.write_png(job(progress={"history": [{"step": 1, "trainLoss": 3.0}, {"step": 2, "trainLoss": 2.0,
                                                                                  "evalLoss": 2.5}]}), str(path)) == (2, 1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_history_says_why():
    with pytest.raises(PluginError, match="no loss history yet"):
        plot.write_png(job(phase="Validating"), "/nonexistent/x.png")


@pytest.mark.parametrize("status, message, expected", [
    (403, 'finetunejobs "x" is forbidden: User "bob" cannot patch resource',
     "you are not allowed to cancel finetunejob x in namespace team-b (ask a namespace admin"),
    (403, "ValidatingAdmissionPolicy 'p' with binding 'p' denied request: setting stage: production needs membership",
     "you are not allowed to promote finetunejob x in namespace team-b: setting stage: production needs membership"),
    (404, "", "finetunejob x not found in namespace team-b"),
    (422, "The FineTuneJob is invalid: spec.training.maxSteps: must be > 0", "the cluster refused to cancel finetunejob x"),
    (401, "", "did not accept your credentials"),
])
def test_api_errors_are_reported_in_plain_words(status, message, expected):
    action = "promote" if "membership" in message else "cancel"
    assert expected in str(explain(FakeApiError(status, message), action, "finetunejob", "x", "team-b"))


def test_connection_flags_work_before_and_after_the_subcommand_like_kubectl():
    assert parser().parse_args(["-n", "a", "list"]).namespace == "a"
    args = parser().parse_args(["--context", "dev", "watch", "job1", "-n", "b"])
    assert (args.context, args.namespace, args.job) == ("dev", "b", "job1")


class RecordingCluster:
    """The plugin's Cluster calls promote() makes, recorded in order."""

    def __init__(self, obj):
        self.obj, self.patches = obj, []

    def get(self, plural, name, verb):
        return self.obj

    def patch(self, plural, name, body, verb):
        self.patches.append(body["spec"]["stage"])


def test_promote_asks_again_when_the_last_production_request_was_refused():
    from finetune_operator.plugin import commands
    refused = version("bot-v2", stage="production", phase="Registered", reason="PreloadFailed", observedGeneration=3)
    refused["metadata"]["generation"] = 3
    c = RecordingCluster(refused)
    assert "asked again" in commands.promote(c, "bot-v2") and c.patches == ["candidate", "production"]
    serving = version("bot-v3", stage="production", phase="Production", observedGeneration=1)
    serving["metadata"]["generation"] = 1
    c = RecordingCluster(serving)
    assert "already asks" in commands.promote(c, "bot-v3") and c.patches == []
    pending = version("bot-v4", stage="production", phase="Registered", observedGeneration=1)
    pending["metadata"]["generation"] = 2  # the operator has not seen the newest spec yet: no toggling
    c = RecordingCluster(pending)
    assert "already asks" in commands.promote(c, "bot-v4") and c.patches == []
    candidate = RecordingCluster(version("bot-v5"))
    commands.promote(candidate, "bot-v5")
    assert candidate.patches == ["production"]
