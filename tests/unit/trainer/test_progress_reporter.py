"""The trainer's /progress document keeps to the contract in finetune_api.progress."""
import pytest

from finetune_api import progress
from finetune_trainer.report import Reporter


def test_an_update_with_a_key_outside_the_contract_is_refused():
    reporter = Reporter("team", "bot", enabled=False)
    with pytest.raises(ValueError, match="trainloss"):
        reporter.update(trainloss=1.0)
    with pytest.raises(ValueError, match="phase"):
        reporter.update(phase="warming")


def test_what_the_trainer_serves_is_what_the_operator_reads():
    reporter = Reporter("team", "bot", enabled=False)
    reporter.update(phase="training", step=3, totalSteps=12, trainLoss=1.5, etaSeconds=9.7)
    doc = reporter.snapshot()
    assert set(doc) <= progress.KEYS
    assert progress.to_status(doc)["display"] == "3/12" and progress.to_status(doc)["etaSeconds"] == 9
