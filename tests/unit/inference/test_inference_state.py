"""The agent's beliefs survive a restart (state file) and read back as the admin API's shape."""
from finetune_inference import state as statemod
from finetune_inference.engine_client import already_loaded, parse_models


def record(name, version):
    return statemod.AdapterRecord(name=name, model="bot", version=version, digest="sha256:" + "1" * 64, rank=4,
                                  target_modules=["q_proj"], loaded_at="2026-01-01T00:00:00Z",
                                  files={"adapter_config.json": "2" * 64})


def test_state_round_trips_through_the_shared_volume(tmp_path):
    s = statemod.AgentState()
    s.adapters["bot--v1-11111111"] = record("bot--v1-11111111", "v1")
    s.aliases["bot"] = {"bot--v1-11111111": 100}
    s.faults["bot--v1-11111111"] = 0.5
    statemod.save(tmp_path, s)
    back = statemod.load(tmp_path)
    assert back.to_json() == s.to_json()
    assert statemod.load(tmp_path / "absent").adapters == {}


def test_alias_view_and_routing_tables():
    s = statemod.AgentState()
    s.adapters = {"bot--v1-1": record("bot--v1-1", "v1"), "bot--v2-2": record("bot--v2-2", "v2")}
    s.adapters["bot--v2-2"].loaded = False
    s.aliases["bot"] = {"bot--v1-1": 90, "bot--v2-2": 10}
    assert s.alias_view() == {"bot": [{"name": "bot--v1-1", "version": "v1", "weight": 90},
                                      {"name": "bot--v2-2", "version": "v2", "weight": 10}]}
    assert s.loaded_names() == {"bot--v1-1"} and s.routed_to("bot--v2-2") == ["bot"]
    aliases, adapters = s.route_tables()
    assert aliases == {"bot": [("bot--v1-1", 90), ("bot--v2-2", 10)]} and adapters["bot--v2-2"][1] == "v2"
    assert record("x", "v1").view()["loaded"] is True


def test_engine_model_list_separates_base_and_adapters():
    doc = {"object": "list", "data": [{"id": "base", "parent": None, "root": "/m", "digest": "sha256:x"},
                                      {"id": "a", "parent": "base", "root": "/adapters/a"}]}
    models = parse_models(doc)
    assert (models.base_name, models.base_digest, models.adapters) == ("base", "sha256:x", {"a": "/adapters/a"})
    assert parse_models({"data": [{"id": "base"}]}).base_digest is None  # vLLM reports no digest


def test_a_duplicate_load_answer_counts_as_already_loaded():
    assert already_loaded(400, '{"error": {"message": "The lora adapter \'a\' has already been loaded."}}')
    assert not already_loaded(400, "LoRA rank 32 is greater than max_lora_rank 16.")
