"""Data parallelism: DDP (replicated model) or FSDP2 (sharded parameters, gradients, optimiser state).

Whatever the strategy, the recipe talks to one `loss_module` and uses these helpers for the
three things that differ: wrapping, skipping gradient sync on accumulation micro-steps, and
gathering full (unsharded) states for checkpoints. Under FSDP the gathers are collectives: every
rank must call them, and rank 0 is the one that writes.
"""
from __future__ import annotations

import contextlib

import torch


def wrap(loss_module, model, strategy: str, dist):
    """Returns the module to run forward/backward through."""
    if dist.world == 1:
        return loss_module
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh(dist.device.type, (dist.world,))
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        blocks = set(getattr(base, "_no_split_modules", None) or [])
        for module in base.modules():
            if type(module).__name__ in blocks:  # one shard group per transformer block
                fully_shard(module, mesh=mesh)
        fully_shard(loss_module, mesh=mesh)  # the root: embeddings, final norm, output head
        return loss_module
    return torch.nn.parallel.DistributedDataParallel(
        loss_module, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None, broadcast_buffers=False)


def sharded(trainer) -> bool:
    return hasattr(trainer, "set_requires_gradient_sync")


def gradient_sync(trainer, sync: bool):
    """Context for one micro-step: gradients are reduced across processes only when sync is True."""
    if sharded(trainer):
        trainer.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if isinstance(trainer, torch.nn.parallel.DistributedDataParallel) and not sync:
        return trainer.no_sync()
    return contextlib.nullcontext()


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(**kw)


def trainable_state(trainer, model) -> dict:
    """The trained parameters as full CPU tensors, named as in `model` (collective under FSDP)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    if not sharded(trainer):
        return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if n in names}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    full = get_model_state_dict(trainer, options=_options(full_state_dict=True, cpu_offload=True))
    return {k[len("model."):]: v.contiguous() for k, v in full.items() if k[len("model."):] in names}


def load_trainable_state(trainer, model, state: dict) -> None:
    if not sharded(trainer):
        from .model import load_trainable_state as load_plain
        load_plain(model, state)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict
    set_model_state_dict(trainer, {f"model.{k}": v for k, v in state.items()},
                         options=_options(full_state_dict=True, strict=False))


def optimizer_state(trainer, optimizer) -> dict:
    if not sharded(trainer):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    return get_optimizer_state_dict(trainer, optimizer, options=_options(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(trainer, optimizer, state: dict) -> None:
    if not sharded(trainer):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    set_optimizer_state_dict(trainer, optimizer, state, options=_options(full_state_dict=True))
