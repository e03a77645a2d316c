"""Loading the base model and wrapping it for the chosen method (LoRA, QLoRA, full).

Weights come from an s3:// prefix (downloaded once into the work dir) or a mounted folder.
The base model's digest is finetune_api.digests.folder_digest (sha256 over its files' names and
sha256s), so the same weights have the same digest wherever they are stored, and the engine reports
the same value; spec.baseModel.digest pins it.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from finetune_api.digests import DOWNLOAD_MARKER, folder_digest

from . import precision as precisionmod, s3 as s3mod
from .architectures import CONV1D_ARCHITECTURES
from .outcomes import ExitCode, TrainerFailure

log = logging.getLogger("finetune-trainer")


def fetch(cfg, s3) -> Path:
    """The local folder holding the base model's files."""
    if cfg.runtime.base_model_path:
        folder = Path(cfg.runtime.base_model_path)
    else:
        uri = cfg.base_model["uri"]
        folder = cfg.runtime.work_dir / "base-model" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        done = folder / DOWNLOAD_MARKER
        if not done.exists():
            s3mod.download_prefix(s3, uri, folder)
            done.write_text(uri)
    if not (folder / "config.json").exists():
        raise TrainerFailure(ExitCode.BASE_MODEL_INVALID,
                             f"no config.json in the base model at {cfg.base_model.get('uri') or folder}: expected a "
                             "Hugging Face-format model folder")
    return folder


def verify_digest(cfg, folder: Path) -> str:
    digest = folder_digest(folder)
    expected = cfg.base_model.get("digest")
    if expected and expected != digest:
        raise TrainerFailure(ExitCode.BASE_MODEL_INVALID,
                             f"spec.baseModel.digest is {expected} but the weights found have {digest}")
    return digest


def hardware_plan(cfg, device) -> "precisionmod.Plan":
    """Fails early (UnsupportedHardware) for what this device cannot run; else the run's precision Plan."""
    if cfg.method == "qlora" and device.type != "cuda":
        raise TrainerFailure(ExitCode.UNSUPPORTED_HARDWARE,
                             "spec.method.type qlora needs a CUDA GPU: bitsandbytes' 4-bit NF4 kernels run only on "
                             "NVIDIA GPUs and none is visible here (torch.cuda.is_available() is False). The trainer "
                             "does not fall back to full precision; use method lora to train on CPU.")
    return precisionmod.resolve(cfg, device)


def load(cfg, folder: Path, device, plan=None):
    """(model ready to train, tokenizer, model_type). The model's trainable parameters are the method's.

    plan (precision.Plan, default hardware_plan(cfg, device)) sets the dtype the base is loaded in."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    plan = plan or hardware_plan(cfg, device)
    method = cfg.method
    model_type = AutoConfig.from_pretrained(folder).model_type
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"dtype": plan.torch_dtype()}
    if method == "qlora":
        from transformers import BitsAndBytesConfig
        q = cfg.quantization
        qdtype = plan.torch_dtype()
        kwargs = {"dtype": qdtype, "device_map": {"": device.index or 0},
                  "quantization_config": BitsAndBytesConfig(
                      load_in_4bit=True, bnb_4bit_quant_type=q["quantType"],
                      bnb_4bit_use_double_quant=q["doubleQuant"], bnb_4bit_compute_dtype=qdtype)}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except (OSError, ValueError) as err:
        raise TrainerFailure(ExitCode.BASE_MODEL_INVALID, f"cannot load the base model: {err}") from None
    if method != "qlora":
        model.to(device)
    if cfg.training["gradientCheckpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if method == "full":
        return model, tokenizer, model_type
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.training["gradientCheckpointing"])
    lora = cfg.lora
    try:
        targets = cfg.target_modules(model_type)
    except ValueError as err:
        raise TrainerFailure(ExitCode.INVALID_CONFIG, str(err)) from None
    peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                             target_modules=targets, bias=lora["bias"], use_rslora=lora["useRslora"],
                             use_dora=lora["useDora"], task_type="CAUSAL_LM",
                             fan_in_fan_out=model_type in CONV1D_ARCHITECTURES)
    try:
        # The adapter weights stay fp32 over a half-precision base: the optimiser's master copy (precision.py).
        model = get_peft_model(model, peft_config, autocast_adapter_dtype=True)
    except ValueError as err:  # e.g. target modules not found in the model
        raise TrainerFailure(ExitCode.INVALID_CONFIG, f"spec.method.lora.targetModules: {err}") from None
    return model, tokenizer, model_type


def trainable_state(model) -> dict:
    """What a checkpoint needs of the model: the trained parameters only."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} trained parameters (e.g. {missing[0]})")
    import torch
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
