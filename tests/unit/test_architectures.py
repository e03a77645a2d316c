import pytest

from finetune_api.finetunejob_crd import ARCHITECTURES
from finetune_trainer.architectures import UnknownArchitecture, default_target_modules


def test_every_architecture_the_api_accepts_has_defaults():
    for arch in ARCHITECTURES:
        if arch != "auto":
            assert default_target_modules(arch)


def test_llama_style_models_adapt_attention_and_mlp():
    assert default_target_modules("llama") == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_unknown_architecture_says_how_to_fix_it():
    with pytest.raises(UnknownArchitecture, match="set spec.method.lora.targetModules"):
        default_target_modules("bert")
