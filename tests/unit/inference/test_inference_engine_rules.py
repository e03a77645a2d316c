"""The reference engine follows vLLM's rules: LoRA registry, residency LRU, rank check, wire shapes."""
import json

import pytest

from finetune_inference import loras, protocol
from finetune_inference.engine import runtime_lora_updating_allowed
from finetune_inference.protocol import RequestError


def test_runtime_lora_updating_is_on_only_for_1_or_true_like_vllm():
    for value in ("1", "true", "True", " TRUE "):
        assert runtime_lora_updating_allowed({"VLLM_ALLOW_RUNTIME_LORA_UPDATING": value})
    for value in ("0", "false", "yes", ""):
        assert not runtime_lora_updating_allowed({"VLLM_ALLOW_RUNTIME_LORA_UPDATING": value})
    assert not runtime_lora_updating_allowed({})


def test_a_duplicate_name_is_refused_with_vllms_message_and_a_missing_one_is_404():
    reg = loras.Registry(max_loras=2)
    reg.register("a", "/x/a", 8)
    with pytest.raises(RequestError) as err:
        reg.check_load("a", "/x/a2")
    assert err.value.status == 400 and "has already been loaded" in str(err.value)
    with pytest.raises(RequestError) as err:
        reg.check_unload("b")
    assert err.value.status == 404 and err.value.err_type == "NotFoundError"
    with pytest.raises(RequestError) as err:
        reg.check_load("", "/x")
    assert err.value.err_type == "InvalidUserInput"


def test_residency_is_an_lru_of_max_loras_while_registration_is_unbounded():
    reg = loras.Registry(max_loras=2)
    for name in "abc":
        reg.register(name, f"/x/{name}", 4)
    assert reg.make_resident("a") == (True, None)
    assert reg.make_resident("b") == (True, None)
    assert reg.make_resident("a") == (False, None)       # a is now the most recent
    assert reg.make_resident("c") == (True, "b")          # so b is evicted
    assert list(reg.resident) == ["a", "c"] and len(reg.registered) == 3


def write_adapter(folder, r, rank_pattern=None, weights=True):
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r,
                                                             "rank_pattern": rank_pattern or {}}))
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"x")
    return str(folder)


def test_an_adapter_above_max_lora_rank_is_refused_with_vllms_message(tmp_path):
    with pytest.raises(RequestError) as err:
        loras.read_adapter(write_adapter(tmp_path / "big", 8, {"q_proj": 32}), max_rank=16)
    assert str(err.value) == "LoRA rank 32 is greater than max_lora_rank 16." and err.value.status == 400
    assert loras.read_adapter(write_adapter(tmp_path / "ok", 16), max_rank=16)["r"] == 16


def test_a_path_without_an_adapter_is_not_found(tmp_path):
    with pytest.raises(RequestError) as err:
        loras.read_adapter(write_adapter(tmp_path / "noweights", 4, weights=False), 16)
    assert err.value.status == 404 and str(err.value).startswith("No adapter found for")


def test_sampling_params_follow_openai_defaults_and_name_bad_fields():
    p = protocol.sampling_params({"max_tokens": 5, "temperature": 0, "stop": "\n"}, 64, 1024)
    assert (p.max_tokens, p.temperature, p.stop) == (5, 0.0, ("\n",))
    assert protocol.sampling_params({}, 64, 1024).max_tokens == 64
    assert protocol.sampling_params({"max_completion_tokens": 7}, 64, 1024).max_tokens == 7
    for bad in ({"max_tokens": 0}, {"max_tokens": 2000}, {"temperature": "hot"}, {"stream": True}, {"n": 2},
                {"stop": [1]}):
        with pytest.raises(RequestError):
            protocol.sampling_params(bad, 64, 1024)


def test_stop_strings_cut_the_text_at_the_first_occurrence():
    assert protocol.apply_stop("a, b. c.", (".", ",")) == ("a", True)
    assert protocol.apply_stop("abc", ("x",)) == ("abc", False)


def test_chat_messages_keep_text_parts_and_refuse_unknown_roles():
    msgs = protocol.chat_messages({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert msgs == [{"role": "user", "content": "hi"}]
    with pytest.raises(RequestError):
        protocol.chat_messages({"messages": [{"role": "tool", "content": "x"}]})


def test_error_bodies_and_success_texts_have_vllms_shape():
    assert protocol.error_body("m", "NotFoundError", 404) == {"error": {"message": "m", "type": "NotFoundError",
                                                                        "code": 404}}
    assert protocol.load_success("a") == "Success: LoRA adapter 'a' added successfully."
    assert protocol.unload_success("a") == "Success: LoRA adapter 'a' removed successfully."
    card = protocol.model_card("a", "/p", "base")
    assert card["object"] == "model" and card["root"] == "/p" and card["parent"] == "base"
