"""Fail closed: blind bake-window checks (no answer, no data) count, extend the window, and after
spec.rollback.maxBlindChecks in a row roll back or hold, as spec.rollback.onBlind says."""
from __future__ import annotations

import pytest

from finetune_operator.modelversion import blind, decide
from finetune_operator.modelversion.decide import decide as decide_pass
from finetune_operator.modelversion.snapshot import Analysis, Count, Emit, Flip, Report, WriteRecord

from mv_fixtures import NOW, mv, on, pod, rec, registered_status, served, snap, won

ERRORS = 'sum(rate(errors{namespace="team",version="v2"}[1m]))'
RECENT = "2027-01-15T07:59:00Z"          # a minute before NOW
LONG_AGO = "2027-01-15T07:49:00Z"        # 660 s before NOW: past a 600 s window unless extended


def bake(**extra) -> dict:
    return {"query": ERRORS, "threshold": 0.5, "intervalSeconds": 5, "bakeWindowSeconds": 600, "maxBlindChecks": 3,
            "onBlind": "Rollback", **extra}


def production(analysis, blind_checks: int = 0, extended: float = 0.0, promoted_at: str = RECENT,
               bw_promoted_at: str | None = None, **rb):
    status = registered_status("v2")
    if blind_checks or extended:
        status["bakeWindow"] = {"promotedAt": bw_promoted_at or promoted_at, "blindChecks": blind_checks,
                                "extendedSeconds": extended}
    obj = mv("v2", rollback=bake(**rb), status=status)
    views = [pod("pod-a", served("v1"), served("v2"), alias=on("v2"))]
    return snap(obj, views, rec("v2", "v1", promoted_at=promoted_at, decisions=won("v2")), analysis=analysis,
                others=[mv("v1")])


def events(dec, reason):
    return [a for a in dec.actions if isinstance(a, (Emit, Report)) and a.reason == reason]


def condition(dec, ctype):
    return next((c for c in dec.status["conditions"] if c["type"] == ctype), None)


def _counts_and_extends(dec):
    assert dec.status["phase"] == "Production"
    assert dec.status["bakeWindow"]["blindChecks"] == 1 and dec.status["bakeWindow"]["extendedSeconds"] == 5
    assert events(dec, "AnalysisNoData") and not [a for a in dec.actions if isinstance(a, Flip) and a.measure]


def _fixed_words_only(dec):
    (event,) = events(dec, "AnalysisFailed")
    assert event.message.startswith("rollback query blind: Prometheus answered HTTP 500;")
    assert dec.status["bakeWindow"]["blindChecks"] == 2


def _rolls_back_blind(dec):
    assert dec.status["phase"] == "RolledBack"
    assert dec.status["rollback"] == {"query": ERRORS, "threshold": 0.5, "restoredVersion": "v1",
                                      "trigger": "blind", "blindChecks": 3}
    assert isinstance(dec.actions[0], WriteRecord)
    (flip,) = [a for a in dec.actions if isinstance(a, Flip)]
    assert flip.name == served("v1") and flip.measure == "rollback"
    assert Count("ROLLBACKS", ("team", "bot", "blind")) in dec.actions
    assert "3 checks in a row had no answer or no data" in dec.status["message"]
    assert events(dec, "RolledBack")


def _holds(dec):
    assert dec.status["phase"] == "Production"
    blind_cond = condition(dec, "Blind")
    assert blind_cond["status"] == "True" and "holding" in blind_cond["message"]
    assert not [a for a in dec.actions if isinstance(a, WriteRecord)]


def _data_resets(dec):
    assert dec.status["bakeWindow"]["blindChecks"] == 0 and dec.status["bakeWindow"]["extendedSeconds"] == 10
    assert dec.status["phase"] == "Production" and not events(dec, "AnalysisNoData")


def _breach_still_rolls_back(dec):
    assert dec.status["phase"] == "RolledBack" and dec.status["rollback"]["trigger"] == "analysis"


def _extended_window_still_watched(dec):
    assert dec.status["bakeWindow"]["blindChecks"] == 1
    assert "bake window until" in condition(dec, "Promoted")["message"]


def _old_promotion_ignored(dec):
    assert dec.status["bakeWindow"]["blindChecks"] == 1 and dec.status["bakeWindow"]["promotedAt"] == RECENT


CASES = [
    ("one check with no data counts, extends the window and stays production",
     production(Analysis(ERRORS, None)), _counts_and_extends),
    ("an unanswered check is blind and reported in fixed words only",
     production(Analysis(ERRORS, error="Prometheus answered HTTP 500"), blind_checks=1, extended=5), _fixed_words_only),
    ("maxBlindChecks blind checks in a row roll back (onBlind Rollback)",
     production(Analysis(ERRORS, None), blind_checks=2, extended=10), _rolls_back_blind),
    ("maxBlindChecks blind checks in a row hold with condition Blind (onBlind Hold)",
     production(Analysis(ERRORS, None), blind_checks=2, extended=10, onBlind="Hold"), _holds),
    ("a check with data resets the run and keeps the extension",
     production(Analysis(ERRORS, 0.1), blind_checks=2, extended=10), _data_resets),
    ("a breach after blind checks still rolls back as a breach",
     production(Analysis(ERRORS, 0.9), blind_checks=2, extended=10), _breach_still_rolls_back),
    ("a window past bakeWindowSeconds but extended by blind checks is still watched",
     production(Analysis(ERRORS, None), promoted_at=LONG_AGO, blind_checks=0, extended=120), _extended_window_still_watched),
    ("blind checks of an earlier promotion do not count",
     production(Analysis(ERRORS, None), blind_checks=2, extended=10, bw_promoted_at="2027-01-01T00:00:00Z"),
     _old_promotion_ignored),
]


@pytest.mark.parametrize("behaviour, snapshot, check", CASES, ids=[c[0] for c in CASES])
def test_blind_checks(behaviour, snapshot, check):
    check(decide_pass(snapshot, NOW))


def test_repeated_blind_checks_post_the_very_same_words_so_events_fold():
    first = events(decide_pass(production(Analysis(ERRORS, None)), NOW), "AnalysisNoData")
    later = events(decide_pass(production(Analysis(ERRORS, None), blind_checks=1, extended=5), NOW + 5),
                   "AnalysisNoData")
    assert first == later


@pytest.mark.parametrize("promoted_ago, extended, open_", [
    (60, 0, True), (660, 0, False), (660, 120, True), (800, 120, False)])
def test_the_bake_window_is_open_until_its_end_plus_every_blind_extension(promoted_ago, extended, open_):
    promoted_at = decide.iso(NOW - promoted_ago)
    status = {"bakeWindow": {"promotedAt": promoted_at, "blindChecks": 0, "extendedSeconds": extended}}
    spec = {"rollback": bake()}
    assert decide.bake_window_open(spec, rec("v2", promoted_at=promoted_at), NOW, status) is open_


@pytest.mark.parametrize("answer, blind_", [
    (Analysis("q", None), True), (Analysis("q", error="Prometheus could not be reached"), True),
    (Analysis("q", 0.0), False), (Analysis("q", 3.0), False)])
def test_a_check_is_blind_without_an_answer_or_without_data(answer, blind_):
    assert blind.is_blind(answer) is blind_
