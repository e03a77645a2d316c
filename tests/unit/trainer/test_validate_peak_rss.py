"""validate_only reports the pass's peak RSS (datasetStats.peakRssBytes), on success and in a failure's stats:
the process node enforces no memory limit, so the scale e2e test asserts the limit from this number."""
from __future__ import annotations

import pytest

from finetune_trainer import train
from finetune_trainer.outcomes import ExitCode, TrainerFailure


def recipe_whose_pass(outcome):
    recipe = object.__new__(train.Recipe)  # no S3, model or tokenizer: only the wrapper is under test

    def _validate_only():
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    recipe._validate_only = _validate_only
    return recipe


def current_rss_bytes() -> int:
    """VmRSS, minus a little: the kernel's RSS counters are batched per CPU, so ru_maxrss may trail it by a
    few pages; what matters is the unit (bytes, not KiB)."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024 - 8 * 2 ** 20


def test_peak_rss_is_at_least_the_current_resident_memory():
    now = current_rss_bytes()
    assert train.peak_rss_bytes() >= now > 0


def test_a_valid_dataset_reports_peak_rss_beside_its_counts():
    now = current_rss_bytes()
    result = recipe_whose_pass({"datasetStats": {"rows": 3}}).validate_only()
    assert result["datasetStats"]["rows"] == 3 and result["datasetStats"]["peakRssBytes"] >= now


@pytest.mark.parametrize("failure, has_stats", [
    (TrainerFailure(ExitCode.DATASET_INVALID, "1 invalid row(s)", stats={"rows": 9}), True),
    (TrainerFailure(ExitCode.DATASET_UNSAFE, "data-safety: pii", stats={"rows": 2}), True),
    (TrainerFailure(ExitCode.ACCESS_DENIED, "refused"), False),  # no stats: nothing is invented
])
def test_a_failed_pass_carries_peak_rss_in_its_stats_when_it_has_stats(failure, has_stats):
    with pytest.raises(TrainerFailure) as raised:
        recipe_whose_pass(failure).validate_only()
    stats = raised.value.details.get("stats")
    assert (stats is not None and stats["peakRssBytes"] > 0) if has_stats else stats is None
