"""Default LoRA target modules per model architecture (config.json's model_type).

The trainer's alone: it resolves the defaults once it has read the base model's config.json
(config.TrainerConfig.target_modules) and records the modules it adapted in the manifest's
lora.targetModules, which is what the operator and the adapter agent read. The API package only
lists the accepted architectures (finetune_api.finetunejob_crd.ARCHITECTURES); a unit test keeps
the two lists in step.
The defaults adapt attention and MLP projections - the QLoRA paper's finding is that adapting
all linear layers matters more than the rank - rather than PEFT's historic q_proj/v_proj only.
"""
from __future__ import annotations

_LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "llama": _LLAMA_STYLE,
    "mistral": _LLAMA_STYLE,
    "qwen2": _LLAMA_STYLE,
    "qwen3": _LLAMA_STYLE,
    "gemma": _LLAMA_STYLE,
    "gemma2": _LLAMA_STYLE,
    # Mixture of experts: adapting every expert multiplies adapter size by the expert count.
    "mixtral": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    # GPT-2 uses Conv1D layers: LoRA needs fan_in_fan_out=True for them (the trainer sets it).
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "falcon": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
}
CONV1D_ARCHITECTURES = frozenset({"gpt2"})


class UnknownArchitecture(ValueError):
    pass


def default_target_modules(model_type: str) -> list[str]:
    """The modules LoRA adapts when spec.method.lora.targetModules is unset."""
    try:
        return list(DEFAULT_TARGET_MODULES[model_type])
    except KeyError:
        raise UnknownArchitecture(
            f"no default LoRA target modules for architecture {model_type!r}: set "
            f"spec.method.lora.targetModules (e.g. [all-linear]); known: {', '.join(sorted(DEFAULT_TARGET_MODULES))}"
        ) from None
