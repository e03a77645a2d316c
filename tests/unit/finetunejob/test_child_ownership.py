"""Children found by their fixed names are used, patched or deleted only when they are the job's
(a controller ownerReference with its uid); any other object under such a name is reported
(ChildNameConflict) and left alone. The trainer's config is immutable and its digest is in the pods."""
from __future__ import annotations

import copy
import json

import pytest

from finetune_operator import kube
from finetune_operator.builders import trainer_config
from finetune_operator.finetunejob import Reconciler, act, children
from finetune_operator.finetunejob import decide as D
from finetune_operator.finetunejob import observe as observe_mod
from finetune_operator.finetunejob.draft import CREATE, DELETE_CONFIG_MAP, STOP_TRAINER

from ftj_fixtures import (NOW, SETTINGS, VALIDATED, Preflight, cond, ftj, job, owned_config_map, owner, pod, snapshot,
                          termination)

CONFIG, VALIDATE, TRAIN = children.Conflict("ConfigMap", "bot-config"), children.Conflict("Pod", "bot-validate"), \
    children.Conflict("Job", "bot-train-1")


def run(obj, **kw):
    return D.decide(snapshot(obj, **kw), NOW)


def conditions(decision) -> dict:
    return {c["type"]: c for c in decision.status.get("conditions") or []}


# --- what counts as the job's ---------------------------------------------------------------------
FTJ = {"kind": "FineTuneJob", "apiVersion": "finetune.fto.dev/v1alpha1"}


@pytest.mark.parametrize("refs, mine", [
    (None, False),
    ([], False),
    ([{"uid": "uid-1"}], False),                                   # not a controller reference
    ([{"uid": "uid-1", "controller": False}], False),
    ([{"uid": "uid-2", "controller": True}], False),               # another owner's
    ([{"uid": "uid-2", "controller": True}, {"uid": "uid-1"}], False),
    ([{**FTJ, "uid": "uid-1", "controller": True}], True),
    ([{"uid": "other"}, {**FTJ, "uid": "uid-1", "controller": True}], True),
    ([{"uid": "uid-1", "controller": True}], False),                 # no kind: not a FineTuneJob's
    ([{"kind": "ConfigMap", "apiVersion": "v1", "uid": "uid-1", "controller": True}], False),  # the uid copied
    ([{"kind": "FineTuneJob", "apiVersion": "evil.example/v1", "uid": "uid-1", "controller": True}], False),
])
def test_a_child_is_the_jobs_only_with_a_controller_reference_carrying_its_uid(refs, mine):
    obj = {"metadata": {"name": "bot-config"}}
    if refs is not None:
        obj["metadata"]["ownerReferences"] = refs
    assert children.owned(obj, "uid-1") is mine


def test_nothing_is_owned_by_an_empty_uid():
    assert not children.owned({"metadata": {"ownerReferences": [{"uid": "", "controller": True}]}}, "")


# --- decide: a conflict is reported, nothing is created, the job waits ---------------------------
@pytest.mark.parametrize("status, conflicts, ctype, phase", [
    ({}, (CONFIG,), "Validated", "Validating"),
    ({}, (VALIDATE,), "Validated", "Validating"),
    ({}, (CONFIG, VALIDATE), "Validated", "Validating"),
    ({"phase": "Queued", "conditions": [VALIDATED]}, (TRAIN,), "Running", "Queued"),
    ({"phase": "Queued", "conditions": [VALIDATED]}, (CONFIG,), "Running", "Queued"),
])
def test_a_taken_child_name_is_reported_and_nothing_is_created(status, conflicts, ctype, phase):
    d = run(ftj(status=status), conflicts=conflicts, config_map_exists=False, preflight=Preflight())
    assert not d.actions
    c = conditions(d)[ctype]
    assert (c["status"], c["reason"]) == ("False", "ChildNameConflict")
    for conflict in conflicts:
        assert f"{conflict.kind} {conflict.name}" in c["message"]
    assert (d.status["phase"], d.status["reason"]) == (phase, "ChildNameConflict")
    assert [e for e in d.events if e[1] == "ChildNameConflict"] == [("Warning", "ChildNameConflict", c["message"])]
    assert d.requeue == children.RECHECK_SECONDS


def test_a_standing_conflict_posts_its_warning_once():
    first = run(ftj(), conflicts=(CONFIG,))
    again = run(ftj(status=first.status), conflicts=(CONFIG,))
    assert again.events == () and again.status == first.status and again.requeue == children.RECHECK_SECONDS


def test_the_job_continues_once_the_other_object_is_gone():
    blocked = run(ftj(), conflicts=(CONFIG,))
    d = run(ftj(status=blocked.status), config_map_exists=False, preflight=Preflight())
    assert [(a.kind, a.body["kind"]) for a in d.actions] == [(CREATE, "ConfigMap"), (CREATE, "Pod")]
    assert conditions(d)["Validated"]["reason"] == "Validating"


def test_cancel_still_stops_the_jobs_own_trainer_while_a_name_is_taken():
    d = run(ftj(status={"phase": "Queued", "conditions": [VALIDATED]}, lifecycle={"cancel": True}),
            conflicts=(TRAIN,))
    assert [a.kind for a in d.actions] == [STOP_TRAINER] and d.status["phase"] == "Cancelled"


# --- the config: immutable, its digest in every pod, an outdated one of ours replaced ---------------
def _env(container) -> dict:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_config_map_is_immutable_and_its_digest_is_in_the_validate_pod():
    d = run(ftj(), config_map_exists=False, preflight=Preflight())
    cm, pod_body = (a.body for a in d.actions)
    assert cm["immutable"] is True
    expected = trainer_config.digest(cm["data"][trainer_config.CONFIG_KEY])
    assert _env(pod_body["spec"]["containers"][0])[trainer_config.CONFIG_DIGEST_ENV] == expected


def test_the_trainer_job_carries_the_digest_of_the_existing_config():
    obj = ftj(status={"phase": "Queued", "conditions": [VALIDATED]})
    cm = owned_config_map(obj)
    d = run(obj, config_map=cm)
    (job_body,) = [a.body for a in d.actions if a.kind == CREATE]
    container = job_body["spec"]["template"]["spec"]["containers"][0]
    assert _env(container)[trainer_config.CONFIG_DIGEST_ENV] == \
        trainer_config.digest(cm["data"][trainer_config.CONFIG_KEY])


def _outdated(cm):
    cm = copy.deepcopy(cm)
    cm["data"][trainer_config.CONFIG_KEY] = cm["data"][trainer_config.CONFIG_KEY].replace("s3://data", "s3://old")
    return cm


def _mutable(cm):
    cm = copy.deepcopy(cm)
    del cm["immutable"]
    return cm


@pytest.mark.parametrize("status", [{}, {"phase": "Queued", "conditions": [VALIDATED]}])
@pytest.mark.parametrize("change", [_outdated, _mutable])
def test_an_outdated_config_map_of_the_jobs_is_deleted_by_uid_before_any_pod_mounts_it(status, change):
    obj = ftj(status=status)
    d = run(obj, config_map=change(owned_config_map(obj)), preflight=Preflight())
    assert [(a.kind, a.name, a.value) for a in d.actions] == [(DELETE_CONFIG_MAP, "bot-config", "cm-uid")]
    assert d.requeue == 1.0


# --- observe: a squatter is never read as the job's child -------------------------------------------
class Resp:
    def __init__(self, doc):
        self.data = json.dumps(doc).encode()


class Cluster:
    """Objects by (kind, name); lists return every object of the kind; calls are logged."""

    def __init__(self, objects):
        self.objects, self.calls = dict(objects), []

    def _read(self, kind, name):
        from kubernetes.client.exceptions import ApiException
        self.calls.append(("get", kind, name))
        if (kind, name) not in self.objects:
            raise ApiException(status=404)
        return Resp(self.objects[(kind, name)])

    def _delete(self, kind, name, body=None):
        from kubernetes.client.exceptions import ApiException
        self.calls.append(("delete", kind, name, json.dumps(body, sort_keys=True)))
        if (kind, name) not in self.objects:
            raise ApiException(status=404)
        want = ((body or {}).get("preconditions") or {}).get("uid")
        if want and self.objects[(kind, name)]["metadata"].get("uid") != want:
            raise ApiException(status=409)
        del self.objects[(kind, name)]

    def _list(self, kind):
        self.calls.append(("list", kind))
        return Resp({"items": [o for (k, _), o in self.objects.items() if k == kind]})

    def _create(self, kind, body):
        from kubernetes.client.exceptions import ApiException
        self.calls.append(("create", kind, body["metadata"]["name"]))
        if (kind, body["metadata"]["name"]) in self.objects:
            raise ApiException(status=409)
        self.objects[(kind, body["metadata"]["name"])] = body
        return Resp(body)

    def __getattr__(self, attr):
        verb, _, rest = attr.partition("_")
        kind = {"pod": "Pod", "config_map": "ConfigMap", "job": "Job", "service": "Service", "secret": "Secret"}.get(
            rest.replace("namespaced_", ""))
        if verb == "read":
            return lambda name, ns, **_: self._read(kind, name)
        if verb == "delete":
            return lambda name, ns, body=None, **_: self._delete(kind, name, body)
        if verb == "list":
            return lambda ns, **_: self._list(kind)
        if verb == "create":
            return lambda ns, body, **_: self._create(kind, body)
        raise AttributeError(attr)

    def list_node(self, **_):
        return Resp({"items": [{"metadata": {"name": "gpu-0", "labels": {}},
                                "status": {"allocatable": {"nvidia.com/gpu": "8"}}}]})


@pytest.fixture
def cluster(monkeypatch):
    c = Cluster({})
    for name in ("core", "batch", "custom"):
        monkeypatch.setattr(kube, name, lambda: c)
    monkeypatch.setattr(observe_mod, "_progress", lambda ip, port: None)
    return c


def squatter(name, **extra):
    """An object a tenant made under the child's name: no ownerReference, or one naming another owner."""
    return {"metadata": {"name": name, "uid": f"their-{name}", **extra}}


VALID = termination("Succeeded", datasetStats={"rows": 9, "tokens": 90})


def test_a_planted_validate_pod_that_claims_success_does_not_validate_the_job(cluster):
    planted = pod("Succeeded", VALID)
    planted["metadata"] = squatter("bot-validate")["metadata"]
    cluster.objects[("Pod", "bot-validate")] = planted
    patch, events = {}, []
    Reconciler(ftj(), patch, lambda *e: events.append(e), SETTINGS).reconcile()
    assert patch["phase"] == "Validating" and patch["reason"] == "ChildNameConflict"
    assert "Pod bot-validate" in patch["message"] and "datasetStats" not in patch
    assert ("Warning", "ChildNameConflict") in [e[:2] for e in events]
    assert [c for c in cluster.calls if c[0] in ("create", "delete")] == []


def test_a_planted_config_map_is_never_used_changed_or_deleted(cluster):
    planted = squatter("bot-config", ownerReferences=owner("uid-someone-else"))
    planted["data"] = {"config.json": '{"spec": {"dataset": {"uri": "s3://team-b/secret.jsonl"}}}'}
    cluster.objects[("ConfigMap", "bot-config")] = planted
    patch = {}
    Reconciler(ftj(), patch, lambda *e: None, SETTINGS).reconcile()
    assert patch["reason"] == "ChildNameConflict" and "ConfigMap bot-config" in patch["message"]
    assert cluster.objects[("ConfigMap", "bot-config")] == planted
    assert [c for c in cluster.calls if c[0] in ("create", "delete")] == []


def test_a_planted_trainer_job_is_reported_and_its_pods_are_not_read(cluster):
    cluster.objects[("Job", "bot-train-1")] = {**job(active=1), "metadata": squatter("bot-train-1")["metadata"]}
    status = {"phase": "Queued", "conditions": [VALIDATED], "attempts": 1}
    snap = observe_mod.observe(ftj(status=status), SETTINGS)
    assert snap.job is None and snap.conflicts == (TRAIN,) and ("list", "Pod") not in cluster.calls


def test_pods_with_the_jobs_label_but_not_owned_by_its_job_are_ignored(cluster):
    cluster.objects[("Job", "bot-train-1")] = job(active=1)
    cluster.objects[("Pod", "fake")] = pod("Succeeded", termination("Succeeded", manifestUri="s3://x/m.json"),
                                           owner_uid="their-job")
    cluster.objects[("Pod", "real")] = pod("Running")
    status = {"phase": "Running", "conditions": [VALIDATED, cond("Running", "True", "Training")], "attempts": 1}
    snap = observe_mod.observe(ftj(status=status), SETTINGS)
    assert [p["status"]["phase"] for p in snap.pods] == ["Running"]


# --- act: every delete checks ownership and carries the uid as its precondition ---------------------
def _deletes(cluster):
    return [(c[1], c[2], json.loads(c[3])) for c in cluster.calls if c[0] == "delete"]


def test_cancel_deletes_only_the_jobs_own_trainer_job_and_validate_pod(cluster):
    cluster.objects.update({("Job", "bot-train-1"): squatter("bot-train-1"),
                            ("Pod", "bot-validate"): {"metadata": {"name": "bot-validate", "uid": "vp-uid",
                                                                   "ownerReferences": owner("uid-1")}}})
    act.stop_trainer("team-a", "bot", 1, "uid-1")
    assert ("Job", "bot-train-1") in cluster.objects
    assert _deletes(cluster) == [("Pod", "bot-validate", {"preconditions": {"uid": "vp-uid"}})]


def test_ttl_clean_up_leaves_objects_that_are_not_the_jobs(cluster):
    mine = {"metadata": {"name": "bot-train-1", "uid": "job-uid", "ownerReferences": owner("uid-1")}}
    cluster.objects.update({("Job", "bot-train-1"): mine, ("Job", "bot-train-2"): squatter("bot-train-2"),
                            ("Service", "bot-train-2"): squatter("bot-train-2"),
                            ("Pod", "bot-validate"): squatter("bot-validate"),
                            ("ConfigMap", "bot-config"): squatter("bot-config", ownerReferences=owner("uid-2"))})
    act.delete_children("team-a", "bot", "uid-1")
    assert _deletes(cluster) == [("Job", "bot-train-1", {"propagationPolicy": "Background",
                                                         "preconditions": {"uid": "job-uid"}})]
    assert set(cluster.objects) == {("Job", "bot-train-2"), ("Service", "bot-train-2"), ("Pod", "bot-validate"),
                                    ("ConfigMap", "bot-config")}


def test_a_replacement_put_in_place_after_the_read_is_not_deleted(cluster, monkeypatch):
    cluster.objects[("ConfigMap", "bot-config")] = {"metadata": {"name": "bot-config", "uid": "old",
                                                                 "ownerReferences": owner("uid-1")}}
    read = cluster._read

    def swap_after_read(kind, name):
        resp = read(kind, name)
        cluster.objects[(kind, name)] = squatter(name)  # taken over between the read and the delete
        return resp
    monkeypatch.setattr(cluster, "_read", swap_after_read)
    act.delete_children("team-a", "bot", "uid-1")
    assert cluster.objects[("ConfigMap", "bot-config")] == squatter("bot-config")


def test_the_deletion_clean_up_does_not_wait_for_pods_that_are_not_the_jobs(cluster):
    cluster.objects[("Pod", "lookalike")] = pod("Running", owner_uid="their-job")
    obj = ftj()
    obj["metadata"]["finalizers"] = []
    assert not Reconciler(obj, {}, lambda *e: None, SETTINGS)._children_still_running()
    cluster.objects[("Pod", "bot-validate")] = pod("Running", owner_uid="uid-1")
    assert Reconciler(obj, {}, lambda *e: None, SETTINGS)._children_still_running()
