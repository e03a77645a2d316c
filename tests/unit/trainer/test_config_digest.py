"""The trainer uses a config only when it hashes to the digest the operator put in the pod."""
from __future__ import annotations

import json

import pytest

from finetune_api import termination
from finetune_operator.builders import settings as operator_settings, trainer_config
from finetune_trainer import __main__ as main_mod, config

FTJ = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "FineTuneJob",
       "metadata": {"name": "bot", "namespace": "team-a", "uid": "u-1"},
       "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://models/smollm2/"},
                "dataset": {"uri": "s3://team-a/train.jsonl", "format": "promptCompletion"},
                "output": {"uri": "s3://team-a/out/bot/"}}}
DOC = trainer_config.document(FTJ, operator_settings.OperatorSettings())
PLANTED = DOC.replace("s3://team-a/train.jsonl", "s3://team-b/private.jsonl")


def test_the_operator_and_the_trainer_name_the_same_variable():
    assert trainer_config.CONFIG_DIGEST_ENV == config.CONFIG_DIGEST_ENV


@pytest.mark.parametrize("text, expected, refused", [
    (DOC, trainer_config.digest(DOC), False),        # what the operator wrote
    (DOC, None, False),                              # a run outside the operator: nothing to check
    (PLANTED, trainer_config.digest(DOC), True),     # another config under the job's ConfigMap name
    (DOC + "\n", trainer_config.digest(DOC), True),  # any change at all
    (DOC, "sha256:" + "0" * 64, True),
])
def test_a_config_is_used_only_if_it_hashes_to_the_operators_digest(tmp_path, text, expected, refused):
    path = tmp_path / "config.json"
    path.write_text(text)
    env = {config.CONFIG_DIGEST_ENV: expected} if expected else {}
    if refused:
        with pytest.raises(config.ConfigMismatch) as err:
            config.load(str(path), env=env)
        assert "team-b" not in str(err.value), "the message never quotes the content"
    else:
        assert config.load(str(path), env=env).dataset["uri"] == "s3://team-a/train.jsonl"


def test_a_mismatched_config_ends_the_trainer_with_the_config_mismatch_reason(tmp_path, monkeypatch, capsys):
    path = tmp_path / "config.json"
    path.write_text(PLANTED)
    monkeypatch.setenv(config.CONFIG_DIGEST_ENV, trainer_config.digest(DOC))
    written = {}
    monkeypatch.setattr("finetune_trainer.outcomes.write_termination_message",
                        lambda p, text: written.setdefault("text", text))
    code = main_mod.main(["train", "--config", str(path)])
    assert code == termination.ExitCode.CONFIG_MISMATCH
    doc = json.loads(written["text"])
    assert (doc["reason"], doc["retryable"]) == ("ConfigMismatch", False)
