"""The engine's API key (vLLM's --api-key) and the agent sending it: the LoRA routes refuse anyone else."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from finetune_inference import agent
from finetune_inference.engine import Engine, authorized, parse_args

KEY = "k" * 40


@pytest.mark.parametrize("path, header, key, allowed", [
    ("/v1/unload_lora_adapter", "", KEY, False),
    ("/v1/load_lora_adapter", "Bearer wrong", KEY, False),
    ("/v1/load_lora_adapter", f"bearer {KEY}", KEY, False),
    ("/v1/load_lora_adapter", KEY, KEY, False),
    ("/v1/models", "", KEY, False),
    ("/v1/chat/completions", "", KEY, False),
    ("//v1/unload_lora_adapter", "", KEY, False),          # any path but the open ones, however spelt
    ("/V1/unload_lora_adapter", "", KEY, False),
    ("/v1/load_lora_adapter", f"Bearer {KEY}", KEY, True),
    ("/health", "", KEY, True),                             # the kubelet's probe
    ("/metrics", "", KEY, True),                            # the scrape
    ("/v1/unload_lora_adapter", "", None, True),            # no key configured: vLLM's default, open
    ("/v1/unload_lora_adapter", "", "", True),
])
def test_with_an_api_key_every_route_but_health_and_metrics_needs_the_bearer_key(path, header, key, allowed):
    assert authorized(path, header, key) is allowed


def _call(engine: Engine, method: str, path: str, **kwargs) -> tuple[int, str]:
    async def go():
        async with TestClient(TestServer(engine.app(allow_lora_updates=True))) as client:
            resp = await client.request(method, path, **kwargs)
            return resp.status, await resp.text()
    return asyncio.run(go())


@pytest.mark.parametrize("method, path, headers, status", [
    ("POST", "/v1/unload_lora_adapter", {}, 401),
    ("POST", "/v1/load_lora_adapter", {"Authorization": "Bearer nope"}, 401),
    ("GET", "/v1/models", {}, 401),
    ("GET", "/health", {}, 200),
    # Past the key: the engine's own answer (no such adapter), not a 401.
    ("POST", "/v1/unload_lora_adapter", {"Authorization": f"Bearer {KEY}"}, 404),
])
def test_the_engine_app_refuses_unauthenticated_lora_calls_before_they_reach_the_registry(method, path, headers, status):
    engine = Engine(model=None, served_name="base", model_path="/m", digest="sha256:0",
                    args=parse_args(["--api-key", KEY]))
    code, text = _call(engine, method, path, json={"lora_name": "x"}, headers=headers)
    assert code == status, text
    if status == 401:
        assert text == '{"error": "Unauthorized"}'


def test_the_engine_reads_its_key_from_vllm_api_key(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    assert parse_args([]).api_key == KEY
    monkeypatch.delenv("VLLM_API_KEY")
    assert parse_args([]).api_key is None


def test_the_agent_sends_the_engine_key_from_env_or_file(monkeypatch, tmp_path):
    monkeypatch.setenv("FTO_AGENT_TOKEN", "admin")
    monkeypatch.setenv("FTO_ENGINE_API_KEY", KEY)
    assert agent.engine_headers(agent.parse_args([]).engine_api_key) == {"Authorization": f"Bearer {KEY}"}
    (tmp_path / "key").write_text("from-file\n")
    assert agent.parse_args(["--engine-api-key-file", str(tmp_path / "key")]).engine_api_key == "from-file"
    monkeypatch.delenv("FTO_ENGINE_API_KEY")
    assert agent.engine_headers(agent.parse_args([]).engine_api_key) == {}


@pytest.mark.parametrize("endpoint", ["http://169.254.169.254", "http://[::ffff:a9fe:a9fe]", "http://metadata"])
def test_the_agent_refuses_a_metadata_s3_endpoint_at_start(monkeypatch, endpoint):
    monkeypatch.setenv("FTO_AGENT_TOKEN", "admin")
    with pytest.raises(SystemExit):
        agent.parse_args(["--s3-endpoint", endpoint])
