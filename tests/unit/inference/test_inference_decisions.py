"""The adapter agent's decisions: names, manifests, compatibility, routing, faults."""
import hashlib
import json

import pytest

from finetune_inference import decisions
from finetune_inference.decisions import AgentError, EngineLimits

BASE = "sha256:" + "ab" * 32
SHA = "cd" * 32


def manifest_bytes(**over) -> bytes:
    doc = {"apiVersion": "finetune.fto.dev/v1alpha1", "kind": "AdapterManifest", "method": "lora",
           "modelType": "llama", "lora": {"r": 8, "alpha": 16, "targetModules": ["v_proj", "q_proj"]},
           "files": [{"name": "adapter/adapter_config.json", "sha256": SHA, "size": 10},
                     {"name": "adapter/adapter_model.safetensors", "sha256": "ef" * 32, "size": 99}],
           "baseModel": {"name": "smollm2-135m-instruct", "uri": None, "digest": BASE}}
    doc.update(over)
    return json.dumps(doc).encode()


LIMITS = EngineLimits(max_lora_rank=16, max_loras=2, target_modules=frozenset({"q_proj", "k_proj", "v_proj"}),
                      base_digest=BASE)


def reason(fn, *args):
    with pytest.raises(AgentError) as err:
        fn(*args)
    return err.value.reason


def test_served_name_is_model_version_and_the_first_eight_hex_of_the_manifest_digest():
    digest = "sha256:" + "0123456789abcdef" * 4
    assert decisions.served_name("support-bot", "v1", digest) == "support-bot--v1-01234567"


@pytest.mark.parametrize("model, version", [("Support", "v1"), ("bot", ""), ("bot", "v1/../x"), ("-bot", "v1")])
def test_served_name_refuses_names_that_are_not_dns_like(model, version):
    assert reason(decisions.served_name, model, version, "sha256:" + "0" * 64) == "InvalidRequest"


def test_a_manifest_parses_into_what_the_agent_checks():
    raw = manifest_bytes()
    m = decisions.parse_manifest(raw, "sha256:" + hashlib.sha256(raw).hexdigest())
    assert m.rank == 8 and m.target_modules == ("q_proj", "v_proj") and m.base_digest == BASE
    assert [f.path for f in m.files] == ["adapter_config.json", "adapter_model.safetensors"]


def test_manifest_bytes_that_do_not_hash_to_the_expected_digest_are_a_digest_mismatch():
    assert reason(decisions.parse_manifest, manifest_bytes(), "sha256:" + "0" * 64) == "DigestMismatch"


@pytest.mark.parametrize("raw, why", [
    (b"not json", "InvalidManifest"),
    (manifest_bytes(kind="Something"), "InvalidManifest"),
    (manifest_bytes(method="full"), "NotAnAdapter"),
    (manifest_bytes(lora=None), "InvalidManifest"),
    (manifest_bytes(files=[{"name": "adapter/../../etc/passwd", "sha256": SHA}]), "InvalidManifest"),
    (manifest_bytes(files=[{"name": "adapter/adapter_model.safetensors", "sha256": SHA}]), "InvalidManifest"),
    (manifest_bytes(files=[{"name": "adapter/adapter_config.json", "sha256": "xyz"}]), "InvalidManifest"),
])
def test_malformed_or_unloadable_manifests_are_refused_with_a_reason(raw, why):
    assert reason(decisions.parse_manifest, raw) == why


def test_downloaded_files_must_match_every_manifest_digest():
    m = decisions.parse_manifest(manifest_bytes())
    decisions.verify_files(m, {"adapter_config.json": SHA, "adapter_model.safetensors": "ef" * 32})
    with pytest.raises(AgentError) as err:
        decisions.verify_files(m, {"adapter_config.json": SHA, "adapter_model.safetensors": "00" * 32})
    assert err.value.reason == "DigestMismatch" and "adapter_model.safetensors" in err.value.message
    assert reason(decisions.verify_files, m, {"adapter_config.json": SHA}) == "DigestMismatch"


@pytest.mark.parametrize("over, why", [
    ({"lora": {"r": 32, "targetModules": ["q_proj"]}}, "RankTooLarge"),
    ({"lora": {"r": 8, "targetModules": ["q_proj", "gate_proj"]}}, "TargetModulesMissing"),
    ({"baseModel": {"name": "other", "digest": "sha256:" + "99" * 32}}, "BaseModelMismatch"),
])
def test_incompatible_adapters_are_refused_before_loading(over, why):
    assert reason(decisions.check_compat, decisions.parse_manifest(manifest_bytes(**over)), LIMITS) == why


def test_a_compatible_adapter_passes_and_an_unknown_base_digest_blocks_loading():
    m = decisions.parse_manifest(manifest_bytes())
    decisions.check_compat(m, LIMITS)
    unknown = EngineLimits(16, 2, LIMITS.target_modules, None)
    assert reason(decisions.check_compat, m, unknown) == "BaseModelUnknown"


def test_the_configured_base_digest_wins_and_a_disagreeing_engine_is_reported():
    assert decisions.base_digest(None, BASE) == (BASE, None)
    assert decisions.base_digest(BASE, None) == (BASE, None)
    digest, problem = decisions.base_digest(BASE, "sha256:" + "11" * 32)
    assert digest == BASE and "engine reports" in problem


@pytest.mark.parametrize("weights", [{}, {"a": 60, "b": 30}, {"a": 50.5, "b": 49.5}, {"a": 101, "b": -1},
                                     {"a": True, "b": 99}])
def test_weights_must_be_integers_summing_to_100(weights):
    assert reason(decisions.validate_weights, weights, {"a", "b"}) == "InvalidRequest"


def test_weights_may_only_name_loaded_adapters_and_zero_weights_are_dropped():
    assert reason(decisions.validate_weights, {"a": 50, "c": 50}, {"a", "b"}) == "NotLoaded"
    assert decisions.validate_weights({"a": 100, "c": 0}, {"a"}) == {"a": 100}


def test_weighted_choice_splits_the_unit_interval_by_percent():
    entries = [("a", 25), ("b", 75)]
    assert decisions.choose(entries, 0.0) == "a" and decisions.choose(entries, 0.2499) == "a"
    assert decisions.choose(entries, 0.25) == "b" and decisions.choose(entries, 0.9999) == "b"
    picks = [decisions.choose(entries, i / 1000) for i in range(1000)]
    assert picks.count("a") == 250


def test_route_resolves_alias_then_served_name_then_base_model():
    aliases = {"bot": [("bot--v1-11111111", 100)]}
    adapters = {"bot--v1-11111111": ("bot", "v1", "sha256:1"), "bot--v2-22222222": ("bot", "v2", "sha256:2")}
    alias = decisions.route("bot", aliases, adapters, "base", BASE, 0.5)
    assert (alias.served, alias.model, alias.version, alias.digest) == ("bot--v1-11111111", "bot", "v1", "sha256:1")
    direct = decisions.route("bot--v2-22222222", aliases, adapters, "base", BASE, 0.5)
    assert (direct.served, direct.model, direct.version) == ("bot--v2-22222222", "bot", "v2")
    base = decisions.route("base", aliases, adapters, "base", BASE, 0.5)
    assert (base.served, base.version, base.digest) == ("base", "base", BASE)
    assert decisions.route("nobody", aliases, adapters, "base", BASE, 0.5) is None


def test_an_alias_rolled_back_to_the_base_model_routes_there_labelled_base():
    aliases = {"bot": [("smollm2", 80), ("bot--v1-11111111", 20)]}
    adapters = {"bot--v1-11111111": ("bot", "v1", "sha256:1")}
    to_base = decisions.route("bot", aliases, adapters, "smollm2", BASE, 0.1)
    assert (to_base.served, to_base.model, to_base.version, to_base.digest) == ("smollm2", "bot", "base", BASE)
    assert decisions.route("bot", aliases, adapters, "smollm2", BASE, 0.9).version == "v1"


def test_fault_injection_hits_the_configured_fraction():
    assert sum(decisions.inject_fault(0.3, i / 100) for i in range(100)) == 30
    assert not any(decisions.inject_fault(0.0, i / 100) for i in range(100))
    assert reason(decisions.fault_rate, 1.5) == "InvalidRequest"
