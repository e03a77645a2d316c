"""A checkpoint's digest goes from the trainer's reports into status.checkpoints, and from there
into the next attempt's trainer Job: the only checkpoint a relaunch may resume from."""
from __future__ import annotations

import json

import pytest

from finetune_api import resume
from finetune_operator.builders import trainer_config
from finetune_operator.finetunejob import decide as D
from finetune_operator.finetunejob.draft import CREATE

from ftj_fixtures import NOW, SETTINGS, VALIDATED, cond, ftj, iso, job, pod, snapshot, termination

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
CK = "s3://out/bot/checkpoints/step-"


def running(**extra):
    return {"phase": "Running", "reason": "Training", "attempts": 1, "trainerJob": "bot-train-1",
            "startTime": iso(NOW - 60), "conditions": [VALIDATED, cond("Running", "True", "Training")], **extra}


def test_the_digests_in_the_progress_document_reach_status_checkpoints():
    doc = {"step": 6, "totalSteps": 30, "checkpoints": [
        {"step": 3, "uri": f"{CK}00000003", "digest": D1, "savedAt": iso(NOW - 9)},
        {"step": 6, "uri": f"{CK}00000006", "digest": "not-a-digest"}]}
    d = D.decide(snapshot(ftj(status=running()), job=job(active=1), pods=(pod(),), progress=doc), NOW)
    assert d.status["checkpoints"] == [{"step": 3, "uri": f"{CK}00000003", "digest": D1, "savedAt": iso(NOW - 9)},
                                       {"step": 6, "uri": f"{CK}00000006"}]


def test_the_checkpoint_saved_as_an_attempt_stopped_is_recorded_for_the_retry():
    stopped = termination("Preempted", True, step=8, checkpoint={"step": 8, "uri": f"{CK}00000008", "digest": D2})
    status = running(checkpoints=[{"step": 3, "uri": f"{CK}00000003", "digest": D1}])
    d = D.decide(snapshot(ftj(status=status), job=job(conditions=[("Failed", "BackoffLimitExceeded")], failed=1),
                          pods=(pod("Failed", stopped, 15),)), NOW)
    assert (d.status["reason"], d.status["attempts"]) == ("Retrying", 2)
    assert resume.pointer(d.status["checkpoints"]) == {"step": 8, "uri": f"{CK}00000008", "digest": D2}


def relaunch(checkpoints):
    obj = ftj(status={"attempts": 2, "phase": "Queued", "startTime": iso(NOW - 60), "nextAttemptAfter": int(NOW - 1),
                      "conditions": [VALIDATED, cond("Running", "False", "Retrying")], "checkpoints": checkpoints})
    d = D.decide(snapshot(obj, config_map=trainer_config.config_map(obj, SETTINGS)), NOW)
    jobs = [a.body for a in d.actions if a.kind == CREATE and a.body["kind"] == "Job"]
    assert [j["metadata"]["name"] for j in jobs] == ["bot-train-2"]
    return {e["name"]: e.get("value") for e in jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("checkpoints,pointer", [
    ([{"step": 3, "uri": f"{CK}00000003", "digest": D1}, {"step": 6, "uri": f"{CK}00000006", "digest": D2}],
     {"step": 6, "uri": f"{CK}00000006", "digest": D2}),
    ([{"step": 3, "uri": f"{CK}00000003", "digest": D1}, {"step": 6, "uri": f"{CK}00000006"}],  # no digest: unusable
     {"step": 3, "uri": f"{CK}00000003", "digest": D1}),
    ([{"step": 6, "uri": f"{CK}00000006"}], None),
    ([], None),
])
def test_the_retry_is_given_the_newest_checkpoint_with_a_recorded_digest(checkpoints, pointer):
    env = relaunch(checkpoints)
    assert env["FTO_TRAINER_ATTEMPT"] == "2"
    assert (json.loads(env[resume.RESUME_ENV]) if resume.RESUME_ENV in env else None) == pointer


def test_the_operators_config_tells_the_trainer_to_resume_only_from_recorded_checkpoints():
    assert trainer_config.render(ftj(), SETTINGS)["runtime"]["resumePolicy"] == resume.RECORDED


@pytest.mark.parametrize("entry,kept", [
    ({"step": 8, "uri": f"{CK}00000008", "digest": D2}, True),
    ({"step": 8, "uri": f"{CK}00000008"}, False),                      # no digest: nothing to trust it by
    ({"step": "8", "uri": f"{CK}00000008", "digest": D2}, False),
    (None, False),
])
def test_only_a_reported_checkpoint_with_a_digest_is_merged_into_status(entry, kept):
    before = [{"step": 3, "uri": f"{CK}00000003", "digest": D1}]
    after = resume.merge(before, entry)
    assert after == (before + [entry] if kept else before)
