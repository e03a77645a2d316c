"""spec.training.precision: the dtype a run computes in, decided once, before any data is read.

    effective(requested, cuda, bf16_supported) -> "bf16" | "fp16" | "fp32"   (pure; refuses what cannot run)
    plan_for(precision, method, qlora_compute)  -> Plan                     (pure; what each method does)
    Plan.autocast(device), Plan.scaler()                                   (the loop's two hooks)

What each method does with a half precision (bf16 or fp16):
  - lora: the frozen base is loaded in that dtype (half the memory, tensor-core matmuls); PEFT
    keeps the adapter weights in fp32 (get_peft_model upcasts them: autocast_adapter_dtype), so
    the optimiser updates fp32 master weights - a bf16 weight would round away most small
    AdamW updates. The forward runs under autocast, so the adapter matmuls are half too.
  - full: the weights stay fp32 (the master copy the optimiser updates) and the forward runs
    under autocast: mixed precision, not a half-precision model.
  - qlora: the 4-bit base's other weights and its matmul compute use
    spec.method.quantization.computeDtype (bitsandbytes' setting); the precision sets autocast.
fp16 adds loss scaling (torch.amp.GradScaler), as its narrow exponent range needs; bf16 does not.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional

from .outcomes import ExitCode, TrainerFailure

HALF = ("bf16", "fp16")


def effective(requested: str, cuda: bool, bf16_supported: bool) -> str:
    """The precision a run uses for spec.training.precision on this hardware, or UnsupportedHardware."""
    if requested == "auto":
        return ("bf16" if bf16_supported else "fp16") if cuda else "fp32"
    if requested in HALF and not cuda:
        raise TrainerFailure(ExitCode.UNSUPPORTED_HARDWARE,
                             f"spec.training.precision is {requested}, which needs a CUDA GPU, and none is visible "
                             "here (torch.cuda.is_available() is False); set it to auto or fp32 to train on CPU")
    if requested == "bf16" and not bf16_supported:
        raise TrainerFailure(ExitCode.UNSUPPORTED_HARDWARE,
                             "spec.training.precision is bf16, which this GPU does not support "
                             "(torch.cuda.is_bf16_supported() is False); set it to auto or fp16")
    if requested not in (*HALF, "fp32"):
        raise TrainerFailure(ExitCode.INVALID_CONFIG,
                             f"spec.training.precision must be auto, bf16, fp16 or fp32, got {requested!r}")
    return requested


@dataclasses.dataclass(frozen=True)
class Plan:
    precision: str              # the effective precision: recorded in the manifest
    load: str                   # dtype the base model's weights are loaded in
    autocast: Optional[str]     # dtype the forward runs in under torch.autocast; None: no autocast
    loss_scaling: bool          # fp16: GradScaler

    def torch_dtype(self, name: Optional[str] = None):
        import torch
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name or self.load]

    def autocast_context(self, device):
        if self.autocast is None:
            return contextlib.nullcontext()
        import torch
        return torch.autocast(device.type, dtype=self.torch_dtype(self.autocast))

    def scaler(self, device):
        """A GradScaler for fp16, else one that does nothing (same calls in the loop either way)."""
        import torch
        return torch.amp.GradScaler(device.type, enabled=self.loss_scaling)


def plan_for(precision: str, method: str, qlora_compute: Optional[str] = None) -> Plan:
    half = precision if precision in HALF else None
    if method == "qlora":
        load = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(qlora_compute or "bfloat16", "bf16")
    elif method == "full":
        load = "fp32"  # master weights; the speed comes from autocast
    else:
        load = half or "fp32"
    return Plan(precision=precision, load=load, autocast=half, loss_scaling=half == "fp16")


def resolve(cfg, device) -> Plan:
    """The run's Plan for this config on this device: raises UnsupportedHardware before anything loads."""
    import torch
    cuda = device.type == "cuda"
    precision = effective(cfg.training["precision"], cuda, cuda and torch.cuda.is_bf16_supported())
    return plan_for(precision, cfg.method, cfg.quantization.get("computeDtype") if cfg.method == "qlora" else None)
