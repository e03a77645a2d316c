import json

import pytest

from finetune_trainer import config

JOB = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "FineTuneJob",
       "metadata": {"name": "bot", "namespace": "team-a", "uid": "u-1"},
       "spec": {"baseModel": {"name": "smollm2-135m-instruct", "uri": "s3://models/smollm2/"},
                "dataset": {"uri": "s3://data/train.jsonl", "format": "promptCompletion"},
                "output": {"uri": "s3://out/bot/"}}}


def test_a_whole_manifest_is_a_config_with_the_crd_defaults_applied():
    cfg = config.from_dict(JOB)
    assert cfg.job == config.JobIdentity("team-a", "bot", "u-1", 1)
    assert cfg.method == "lora" and cfg.lora["r"] == 16 and cfg.lora["alpha"] == 32
    assert cfg.training["learningRate"] == 0.0002 and cfg.training["batchSize"] == 4
    assert cfg.fields["completion"] == "completion"
    assert cfg.output_uri == "s3://out/bot"


def test_config_from_env_json():
    doc = {"job": {"namespace": "n", "name": "j", "uid": "u", "attempt": 2}, "spec": JOB["spec"],
           "runtime": {"metricsPort": 9999}}
    cfg = config.load(env={config.CONFIG_ENV: json.dumps(doc)})
    assert cfg.job.attempt == 2 and cfg.runtime.metrics_port == 9999


@pytest.mark.parametrize("patch, message", [
    ({"dataset": {"uri": "s3://data/t.jsonl", "format": "csv"}}, "spec.dataset.format: Unsupported value 'csv'"),
    ({"training": {"learningRate": 0}}, "spec.training.learningRate: must be greater than 0"),
    ({"training": {"epochs": 1, "maxSteps": 3}}, "set epochs or maxSteps, not both"),
    ({"method": {"type": "lora", "lora": {"rank": 8}}}, "spec.method.lora.rank: unknown field"),
    ({"dataset": {"uri": "s3://d/t.jsonl", "format": "promptCompletion", "completionJsonSchema": "{nope"}},
     "completionJsonSchema is not valid JSON"),
])
def test_invalid_config_names_the_field(patch, message):
    doc = json.loads(json.dumps(JOB))
    doc["spec"].update(patch)
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.from_dict(doc)


def test_config_hash_ignores_lifecycle_but_not_training():
    a = config.from_dict(JOB).config_hash
    doc = json.loads(json.dumps(JOB))
    doc["spec"]["lifecycle"] = {"suspend": True}
    assert config.from_dict(doc).config_hash == a
    doc["spec"]["training"] = {"learningRate": 0.001}
    assert config.from_dict(doc).config_hash != a


def test_missing_config_says_how_to_give_one():
    with pytest.raises(config.ConfigError, match="pass --config PATH or set FTO_TRAINER_CONFIG_FILE"):
        config.load(env={})
