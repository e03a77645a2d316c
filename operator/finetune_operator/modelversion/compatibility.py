"""Pure: can an adapter be loaded on these pods? Checked before anything is loaded anywhere."""
from __future__ import annotations

from .pods import PodView
from .register import Adapter


def problems(adapter: Adapter, views: list[PodView]) -> dict:
    """{pod name: why the adapter cannot be served there}; empty when every pod can take it."""
    out = {}
    for v in views:
        if not v.ok:
            continue
        why = []
        if not adapter.rank:
            why.append("the manifest has no LoRA rank (not a LoRA adapter; full fine-tunes are not served as "
                       "adapters)")
        elif v.max_lora_rank is not None and adapter.rank > v.max_lora_rank:
            why.append(f"adapter rank {adapter.rank} exceeds the engine's max LoRA rank {v.max_lora_rank}")
        if v.modules is not None and adapter.target_modules:
            present = set(v.modules)
            missing = [m for m in adapter.target_modules
                       if m not in present and not any(x.endswith("." + m) for x in present)]
            if missing:
                why.append(f"target modules {missing} do not exist in base model {v.base_name or '?'}")
        if not adapter.base_digest:
            why.append("the adapter's base-model digest is unknown (set spec.baseModel.digest)")
        elif v.base_digest and adapter.base_digest != v.base_digest:
            why.append(f"adapter trained on base model {adapter.base_digest[:19]}..., the pod serves "
                       f"{v.base_name or 'a base model'} {v.base_digest[:19]}...")
        if why:
            out[v.pod.name] = "; ".join(why)
    return out


def message(found: dict) -> str:
    return "; ".join(f"pod {pod}: {why}" for pod, why in sorted(found.items()))
