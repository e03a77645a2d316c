from finetune_operator.modelversion import compatibility, plan, skew
from finetune_operator.modelversion.pods import Pod, PodView, label_selector, ready_pods, served_by, view_from_state
from finetune_operator.modelversion.register import Adapter

BASE = "sha256:" + "b" * 64


def adapter(rank=8, modules=("q_proj", "v_proj"), base=BASE):
    return Adapter("s3://b/p/adapter/", "s3://b/p/manifest.json", "sha256:" + "a" * 64, rank, modules, base, "smol")


def state(name="p", max_rank=16, digest=BASE, adapters=(), aliases=None, modules=None):
    engine = {"maxLoraRank": max_rank}
    if modules is not None:
        engine["targetModules"] = list(modules)
    return {"pod": name, "engine": engine, "baseModel": {"name": "smol", "digest": digest},
            "adapters": [{"name": a} for a in adapters], "aliases": aliases or {}}


def view(name, **kw):
    return view_from_state(Pod(name, "127.0.0.9"), state(name, **kw))


def test_ready_pods_only_ready_with_ip():
    pods = [
        {"metadata": {"name": "b"}, "status": {"podIP": "127.2.0.2", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "a"}, "status": {"podIP": "127.2.0.1", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "c"}, "status": {"podIP": "127.2.0.3", "conditions": [{"type": "Ready", "status": "False"}]}},
        {"metadata": {"name": "d", "deletionTimestamp": "x"},
         "status": {"podIP": "127.2.0.4", "conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "e"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    ]
    assert [p.name for p in ready_pods(pods)] == ["a", "b"]
    assert label_selector({"b": "2", "a": "1"}) == "a=1,b=2"


def test_compatible():
    assert compatibility.problems(adapter(), [view("p1"), view("p2")]) == {}


def test_rank_too_large_names_pod_and_numbers():
    found = compatibility.problems(adapter(rank=64), [view("p1"), view("p2", max_rank=128)])
    assert list(found) == ["p1"] and "rank 64 exceeds the engine's max LoRA rank 16" in found["p1"]
    assert compatibility.message(found).startswith("pod p1: ")


def test_other_base_model():
    found = compatibility.problems(adapter(base="sha256:" + "c" * 64), [view("p1")])
    assert "trained on base model sha256:cccc" in found["p1"]


def test_missing_target_module_when_reported():
    found = compatibility.problems(adapter(modules=("q_proj", "gate_proj")), [view("p1", modules=["q_proj", "v_proj"])])
    assert "gate_proj" in found["p1"]
    assert compatibility.problems(adapter(modules=("gate_proj",)), [view("p1")]) == {}  # not reported: not checked


def test_not_a_lora():
    assert "not a LoRA" in compatibility.problems(adapter(rank=0), [view("p1")])["p1"]


def test_unreachable_pods_are_not_judged_but_listed():
    views = [PodView(Pod("p1", "x"), error="AgentUnreachable: refused"), view("p2")]
    assert compatibility.problems(adapter(), views) == {}
    assert plan.unreachable(views) == {"p1": "AgentUnreachable: refused"}


def test_plans():
    new, old = "bot--v2-aaaaaaaa", "bot--v1-bbbbbbbb"
    views = [view("p1", adapters=[old, new], aliases={"bot": [{"name": old, "weight": 100}]}),
             view("p2", adapters=[old], aliases={"bot": [{"name": old, "weight": 100}]}),
             view("p3", adapters=[old, new], aliases={"bot": [{"name": new, "weight": 100}]})]
    assert [v.pod.name for v in plan.to_preload(views, new)] == ["p2"]
    assert [v.pod.name for v in plan.to_flip(views, "bot", new)] == ["p1", "p2"]
    assert [v.pod.name for v in plan.to_unload(views, "bot", new)] == ["p1"]  # p3 routes to it: never unloaded
    assert skew.skewed(views, "bot", new) == ["p1", "p2"]
    assert skew.describe(views, "bot", new) == f"p1 -> {old}, p2 -> {old}"
    weights = plan.canary_weights(new, old, 20)
    assert weights == {new: 20, old: 80}
    assert [v.pod.name for v in plan.to_weigh(views, "bot", weights)] == ["p1", "p2", "p3"]
    assert plan.canary_weights(new, "", 20) == {new: 100}


def test_served_by_lists_each_pod():
    new, old = "bot--v2-aaaaaaaa", "bot--v1-bbbbbbbb"
    views = [view("p1", adapters=[old, new], aliases={"bot": [{"name": old, "weight": 80}, {"name": new, "weight": 20}]}),
             PodView(Pod("p2", "127.0.0.2"), error="AgentUnreachable")]
    rows = served_by(views, "bot", new, {"p1": "RankTooLarge: no"})
    assert rows[0] == {"pod": "p1", "ip": "127.0.0.9", "loaded": True, "aliasTarget": f"{old}=80,{new}=20",
                       "weight": 20, "message": "RankTooLarge: no"}
    assert rows[1]["message"] == "AgentUnreachable" and rows[1]["loaded"] is False
