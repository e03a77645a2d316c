import json

from finetune_trainer.outcomes import RETRYABLE, ExitCode, termination_message


def test_termination_message_fits_the_kubelet_limit_and_stays_json():
    text = termination_message(ExitCode.DATASET_INVALID, "line 1: bad\n" * 2000, stats={"rows": 3})
    doc = json.loads(text)
    assert len(text) <= 4096
    assert doc["reason"] == "DatasetInvalid" and doc["exitCode"] == 11 and doc["stats"] == {"rows": 3}
    assert doc["message"].endswith("(truncated)")


def test_only_transient_failures_are_retryable():
    assert ExitCode.PREEMPTED in RETRYABLE and ExitCode.S3_UNAVAILABLE in RETRYABLE
    for permanent in (ExitCode.DATASET_INVALID, ExitCode.INVALID_CONFIG, ExitCode.DIVERGED,
                      ExitCode.UNSUPPORTED_HARDWARE):
        assert permanent not in RETRYABLE
