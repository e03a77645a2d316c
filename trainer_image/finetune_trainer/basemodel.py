"""The default base model, as the trainer's `prepare-base-model` command and the demo use it.

The conversion and its cache location are defined once in finetune_api.defaultmodel, because
the reference engine needs the same folder; this module keeps the trainer's names for them.
"""
from __future__ import annotations

from finetune_api.defaultmodel import (DEFAULT_MODEL_NAME, MARKER, ModelNotInstalled, convert_gguf, default_gguf,
                                       models_cache, prepare_default_model)
from finetune_api.digests import file_sha256

__all__ = ["DEFAULT_MODEL_NAME", "MARKER", "ModelNotInstalled", "convert_gguf", "default_gguf", "file_sha256",
           "models_cache", "prepare_default_model"]
