"""The agent's only way to the engine: vLLM's OpenAI-compatible HTTP API, nothing else.

So the same agent runs in front of the reference engine and in front of `vllm serve` (with
VLLM_ALLOW_RUNTIME_LORA_UPDATING=True for the load/unload endpoints).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import aiohttp

from .decisions import AgentError


@dataclasses.dataclass(frozen=True)
class EngineModels:
    base_name: Optional[str]
    base_digest: Optional[str]   # only the reference engine reports one
    adapters: dict               # adapter id -> root (path)


def parse_models(doc: dict) -> EngineModels:
    cards = doc.get("data") or []
    bases = [c for c in cards if not c.get("parent")]
    base = bases[0] if bases else {}
    return EngineModels(base.get("id"), base.get("digest"),
                        {c["id"]: c.get("root") for c in cards if c.get("parent")})


class EngineClient:
    def __init__(self, url: str, session: aiohttp.ClientSession):
        self.url = url.rstrip("/")
        self.session = session

    async def models(self, timeout: float = 3.0) -> EngineModels:
        try:
            async with self.session.get(f"{self.url}/v1/models", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                if r.status != 200:
                    raise AgentError(503, "EngineUnavailable", f"engine /v1/models answered {r.status}")
                return parse_models(await r.json())
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise AgentError(503, "EngineUnavailable", f"engine at {self.url} unreachable: {err or type(err).__name__}") \
                from None

    async def _post_admin(self, path: str, body: dict, timeout: float) -> tuple[int, str]:
        try:
            async with self.session.post(f"{self.url}{path}", json=body,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return r.status, await r.text()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise AgentError(503, "EngineUnavailable", f"engine at {self.url} unreachable: {err or type(err).__name__}") \
                from None

    async def load(self, name: str, path: str, timeout: float = 300.0) -> tuple[int, str]:
        return await self._post_admin("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path}, timeout)

    async def unload(self, name: str, timeout: float = 60.0) -> tuple[int, str]:
        return await self._post_admin("/v1/unload_lora_adapter", {"lora_name": name}, timeout)


def already_loaded(status: int, text: str) -> bool:
    """vLLM answers a duplicate name with 400 '... has already been loaded ...'."""
    return status == 400 and "already been loaded" in text


def not_found(status: int) -> bool:
    return status == 404
