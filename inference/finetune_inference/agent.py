"""finetune-adapter-agent: the sidecar next to an inference engine (vLLM or finetune-engine).

It downloads adapters from S3, verifies them against the trainer's manifest, checks they fit the
engine, loads them through the engine's vLLM-compatible API, routes client traffic by alias with
weights, and exposes metrics. See docs/inference.md and /work/notes/agent-contract.md.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from pathlib import Path

import aiohttp
from aiohttp import web

from finetune_api.endpoints import UnsafeEndpoint, require_safe

from .agent_metrics import AgentMetrics
from .engine_client import EngineClient
from .routes import admin_app, client_app
from .service import AgentService, Settings

log = logging.getLogger("finetune-adapter-agent")
LLAMA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def parse_args(argv=None) -> argparse.Namespace:
    host = os.environ.get("POD_IP", "127.0.0.1")
    p = argparse.ArgumentParser(prog="finetune-adapter-agent", description=__doc__.splitlines()[0])
    p.add_argument("--engine-url", default=f"http://{host}:8080", help="the engine's vLLM-compatible API")
    p.add_argument("--host", default=host, help="address to bind (the pod IP; default $POD_IP)")
    p.add_argument("--port", type=int, default=8000, help="inference port: client API, /metrics, /healthz, /readyz")
    p.add_argument("--admin-port", type=int, default=8001, help="admin API port (bearer token)")
    p.add_argument("--adapter-dir", default="/adapters", help="the volume shared with the engine")
    p.add_argument("--engine-adapter-dir", default=None, help="the same volume's path in the engine (default: same)")
    p.add_argument("--max-lora-rank", type=int, default=16, help="must equal the engine's --max-lora-rank")
    p.add_argument("--max-loras", type=int, default=1, help="the engine's --max-loras (reported in /admin/state)")
    p.add_argument("--target-modules", default=LLAMA_TARGETS,
                   help="comma-separated modules the engine can apply LoRA to (default: Llama-style)")
    p.add_argument("--base-model-digest", default=os.environ.get("FTO_BASE_MODEL_DIGEST"),
                   help="sha256:... of the engine's base model (as trainer manifests record it); default: what the "
                        "engine reports (finetune-engine does, vLLM does not)")
    p.add_argument("--s3-endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    p.add_argument("--token-file", default=None, help="file holding the admin token (else $FTO_AGENT_TOKEN)")
    p.add_argument("--engine-api-key-file", default=None,
                   help="file holding the engine's API key, sent on every engine call (else $FTO_ENGINE_API_KEY; "
                        "the engine's --api-key / $VLLM_API_KEY)")
    p.add_argument("--enable-fault-injection", action="store_true", help="allow POST /admin/faults (tests, drills)")
    p.add_argument("--sync-interval", type=float, default=2.0, help="seconds between engine checks")
    args = p.parse_args(argv)
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get("FTO_AGENT_TOKEN", "")
    if not token:
        p.error("an admin token is required: --token-file or $FTO_AGENT_TOKEN")
    args.token = token
    args.engine_api_key = (Path(args.engine_api_key_file).read_text().strip() if args.engine_api_key_file
                           else os.environ.get("FTO_ENGINE_API_KEY", ""))
    try:
        require_safe(args.s3_endpoint, "--s3-endpoint")
    except UnsafeEndpoint as err:
        p.error(str(err))
    return args


def engine_headers(api_key: str) -> dict:
    """What every call to the engine carries: its API key, when one is set."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def serve(args) -> None:
    session = aiohttp.ClientSession(headers=engine_headers(args.engine_api_key))
    metrics = AgentMetrics()
    settings = Settings(
        engine_url=args.engine_url, adapter_dir=Path(args.adapter_dir),
        engine_adapter_dir=args.engine_adapter_dir or args.adapter_dir, max_lora_rank=args.max_lora_rank,
        max_loras=args.max_loras, target_modules=frozenset(m.strip() for m in args.target_modules.split(",") if m),
        base_model_digest=args.base_model_digest, s3_endpoint=args.s3_endpoint,
        fault_injection=args.enable_fault_injection,
        pod=os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname())
    svc = AgentService(settings, EngineClient(args.engine_url, session), metrics)
    runners = []
    for app, port in ((client_app(svc, session), args.port), (admin_app(svc, args.token), args.admin_port)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, port).start()
        runners.append(runner)
    log.info("agent up: inference http://%s:%d, admin http://%s:%d, engine %s", args.host, args.port, args.host,
             args.admin_port, args.engine_url)
    try:
        await svc.sync_forever(args.sync_interval)
    finally:
        for runner in runners:
            await runner.cleanup()
        await session.close()


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
