"""Which version is production: one answer (modelversion.production), used by the plugin too."""
from __future__ import annotations

import pytest

from finetune_operator.modelversion import conditions as cond, production
from finetune_operator.plugin import rollback
from finetune_operator.plugin.errors import PluginError

from mv_fixtures import mv, rec, won


def configmap(r) -> dict:
    return {"metadata": {"resourceVersion": "1"}, "data": r.data()}


VERSIONS = [mv("v1", status={"phase": "Registered", "promotedAt": "2027-01-01T00:00:00Z"}),
            mv("v2", status={"phase": "Registered", "promotedAt": "2027-01-02T00:00:00Z"}),
            # A stale status (the record moved on; its phase was not rewritten yet) must not decide.
            mv("v3", status={"phase": "Production", "promotedAt": "2027-01-03T00:00:00Z"})]


@pytest.mark.parametrize("behaviour, record_, name, version, on_base", [
    ("the record names the production version", rec("v2", "v1"), "bot-v2", "v2", False),
    ("no record: no version is production", None, "", "", False),
    ("after the first version was rolled back the base model serves", rec(on_base="smollm2"), "", "base", True),
])
def test_in_effect(behaviour, record_, name, version, on_base):
    now = production.in_effect(record_)
    assert (now.name, now.version, now.on_base) == (name, version, on_base)
    assert production.is_production(record_, "bot-v2") == (name == "bot-v2")


def test_the_plugin_asks_the_record_when_it_has_it():
    cm = configmap(rec("v2", "v1", decisions=won("v1", "v2")))
    assert rollback.current_production(VERSIONS, cm)["metadata"]["name"] == "bot-v2"
    assert rollback.previous_production(VERSIONS, cm)["metadata"]["name"] == "bot-v1"
    with pytest.raises(PluginError, match="no previous production version"):
        rollback.previous_production(VERSIONS, configmap(rec("v2")))
    with pytest.raises(PluginError, match="nothing to roll back"):
        rollback.previous_production(VERSIONS, configmap(rec(on_base="smollm2")))


@pytest.mark.parametrize("behaviour, record_, name, stage, served", [
    ("the record and stage production agree: served", rec("v2", "v1"), "bot-v2", "production", True),
    ("the record names it but its stage is candidate: not served", rec("v2"), "bot-v2", "candidate", False),
    ("the record names it but it is archived: not served", rec("v2"), "bot-v2", "archived", False),
    ("stage production without the record: not served (it must be promoted)", rec("v1"), "bot-v2", "production",
     False),
    ("no record at all: not served", None, "bot-v2", "production", False),
])
def test_a_version_is_served_only_when_the_record_and_its_stage_agree(behaviour, record_, name, stage, served):
    assert production.serves(record_, name, stage) is served


def test_the_plugin_finds_the_record_named_in_status():
    assert rollback.record_name([mv("v1", status={"productionRecord": "fto-model-bot"})]) == "fto-model-bot"
    assert rollback.record_name([mv("v1", status={})]) is None


@pytest.mark.parametrize("behaviour, where, location", [
    ("the record in the operator's namespace", "fto-system/fto-record-team.bot", ("fto-system", "fto-record-team.bot")),
    ("an old record in the tenant's namespace is never read", "fto-model-bot", None),
    ("no record named", None, None),
])
def test_the_plugin_reads_the_record_only_in_the_operators_namespace(behaviour, where, location):
    status = {"productionRecord": where} if where else {}
    assert rollback.record_location([mv("v1", status=status)]) == location


@pytest.mark.parametrize("behaviour, conditions, phase", [
    ("no conditions yet is Pending", [], "Pending"),
    ("waiting for the job is Pending", [("Registered", False, "WaitingForJob")], "Pending"),
    ("S3 down is Registering", [("Registered", False, "S3Unavailable")], "Registering"),
    ("a digest mismatch is Failed", [("Registered", False, "DigestMismatch")], "Failed"),
    ("registered without a promotion decision is Registered", [("Registered", True, "Verified")], "Registered"),
    ("Promoted is Production", [("Registered", True, "Verified"), ("Promoted", True, "Promoted")], "Production"),
    ("a canary step is Promoting", [("Registered", True, "Verified"), ("Promoted", False, "Canary")], "Promoting"),
    ("a rollback is RolledBack", [("Registered", True, "Verified"), ("Promoted", False, "RolledBack")], "RolledBack"),
    ("a canary abort is RolledBack",
     [("Registered", True, "Verified"), ("Promoted", False, "CanaryAborted")], "RolledBack"),
    ("archived is Archived", [("Registered", True, "Verified"), ("Promoted", False, "Archived")], "Archived"),
    ("a refused request is Registered",
     [("Registered", True, "Verified"), ("Promoted", False, "PromotionConflict")], "Registered"),
])
def test_phase_is_derived_from_the_conditions(behaviour, conditions, phase):
    conds = []
    for ctype, ok, reason in conditions:
        conds = cond.put(conds, ctype, ok, reason, f"{reason} words", 1, "2027-01-01T00:00:00Z")
    got = cond.phase_of(conds)
    assert got[0] == phase
    if conditions:
        assert got[1:] == (conditions[-1][2], f"{conditions[-1][2]} words")


class RecordingCluster:
    """The plugin's Cluster, as far as `rollback` uses it: versions listed, the record read (or refused)."""

    def __init__(self, versions: list, record_=None):
        self.namespace, self.versions, self.record, self.reads, self.patches = "team", versions, record_, [], []

    def list(self, plural: str) -> list:
        return self.versions

    def config_map_or_none(self, name: str, namespace: str | None = None):
        self.reads.append((namespace, name))
        return self.record  # None: absent, or refused (403) to this user

    def patch(self, plural: str, name: str, body: dict, action: str) -> dict:
        self.patches.append((name, body))
        return {}


@pytest.mark.parametrize("behaviour, record_, target", [
    ("a user who may read the operator's namespace rolls back to the record's previous version",
     rec("v2", "v1", decisions=won("v1", "v2")), "bot-v1"),
    ("a user refused the record falls back to what status says", None, "bot-v2"),
])
def test_rollback_reads_the_record_in_the_operators_namespace_or_falls_back_to_status(behaviour, record_, target):
    from finetune_operator.plugin import commands
    where = {"productionRecord": "fto-system/fto-record-team.bot"}
    versions = [mv("v1", status={**where, "phase": "Registered", "promotedAt": "2027-01-01T00:00:00Z"}),
                mv("v2", status={**where, "phase": "Registered", "promotedAt": "2027-01-02T00:00:00Z"}),
                mv("v3", status={**where, "phase": "Production", "promotedAt": "2027-01-03T00:00:00Z"})]
    cluster = RecordingCluster(versions, configmap(record_) if record_ is not None else None)
    commands.rollback_model(cluster, "bot", None)
    assert cluster.reads == [("fto-system", "fto-record-team.bot")]
    assert cluster.patches == [(target, {"spec": {"stage": "production"}})]
