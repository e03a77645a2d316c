"""The engine's LoRA bookkeeping, as vLLM keeps it: pure, no model.

vLLM separates two things. *Registered* adapters (`lora_requests`, what /v1/models lists) have no
limit. *Resident* adapters (weights in memory, ready for a batch) are at most --max-loras, held in
an LRU cache: asking for a registered adapter that is not resident loads it from its path again,
evicting the least recently used. So the files behind a registered adapter must stay on disk.
--max-lora-rank is checked when an adapter is loaded ("LoRA rank R is greater than max_lora_rank M.").
"""
from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from pathlib import Path
from typing import Optional

from .protocol import RequestError


@dataclasses.dataclass(frozen=True)
class Lora:
    name: str
    path: str
    rank: int
    int_id: int


def adapter_rank(config: dict) -> int:
    """The largest rank an adapter_config.json uses (r, or its rank_pattern overrides)."""
    ranks = [int(config.get("r") or 0)] + [int(v) for v in (config.get("rank_pattern") or {}).values()]
    return max(ranks)


def read_adapter(path: str, max_rank: int) -> dict:
    """The adapter's PEFT config, after the checks vLLM makes before loading it."""
    folder = Path(path)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file() or not any((folder / f).is_file() for f in
                                            ("adapter_model.safetensors", "adapter_model.bin")):
        raise RequestError(f"No adapter found for {path}", "NotFoundError", 404)
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise RequestError(f"Loading lora {path} failed: {err}") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise RequestError(f"Loading lora {path} failed: peft_type {config.get('peft_type')!r} is not LORA")
    rank = adapter_rank(config)
    if rank > max_rank:
        raise RequestError(f"LoRA rank {rank} is greater than max_lora_rank {max_rank}.")
    return config


class Registry:
    """Registered adapters by name, and which of them are resident (LRU, at most max_loras)."""

    def __init__(self, max_loras: int):
        self.max_loras = max_loras
        self.registered: dict[str, Lora] = {}
        self.resident: OrderedDict[str, None] = OrderedDict()
        self._next_id = 0

    def check_load(self, name: str, path: str) -> None:
        if not name or not path:
            raise RequestError("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in self.registered:
            raise RequestError(f"The lora adapter '{name}' has already been loaded. If you want to load the adapter "
                               "in place, set 'load_inplace' to True.", "InvalidUserInput")

    def check_unload(self, name: str) -> None:
        if not name:
            raise RequestError("'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput")
        if name not in self.registered:
            raise RequestError(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)

    def register(self, name: str, path: str, rank: int) -> Lora:
        self._next_id += 1
        lora = Lora(name, path, rank, self._next_id)
        self.registered[name] = lora
        return lora

    def unregister(self, name: str) -> None:
        self.registered.pop(name, None)

    def make_resident(self, name: str) -> tuple[bool, Optional[str]]:
        """(needs loading, name to evict first). Marks name as most recently used."""
        if name in self.resident:
            self.resident.move_to_end(name)
            return False, None
        evict = next(iter(self.resident)) if len(self.resident) >= self.max_loras else None
        if evict is not None:
            del self.resident[evict]
        self.resident[name] = None
        return True, evict

    def drop_resident(self, name: str) -> bool:
        return self.resident.pop(name, 0) is None
