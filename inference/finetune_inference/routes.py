"""The agent's two HTTP faces.

Inference port (clients, Prometheus, kubelet): POST /v1/chat/completions and /v1/completions routed
by alias, GET /v1/models (the aliases), GET /metrics, GET /healthz (liveness), GET /readyz (engine
reachable with its base model). Admin port (the operator, bearer token): /admin/*.
"""
from __future__ import annotations

import hmac
import json
import random
import time

import aiohttp
from aiohttp import web

from . import decisions, protocol
from .decisions import AgentError
from .service import AgentService

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


def client_app(svc: AgentService, session: aiohttp.ClientSession, rand=random.random) -> web.Application:
    async def healthz(_req):
        return web.Response(text="ok")

    async def readyz(_req):
        try:
            await svc.refresh_engine()
        except AgentError as err:
            return web.Response(status=503, text=err.message)
        if not svc.view.ready:
            return web.Response(status=503, text=svc.view.problem or "engine not ready")
        return web.Response(text="ok")

    async def metrics(_req):
        return web.Response(body=svc.metrics.render(), content_type="text/plain")

    async def models(_req):
        base_name, _ = svc.base()
        now = int(time.time())
        cards = [protocol.model_card(alias, ",".join(sorted(weights)), base_name, now)
                 for alias, weights in sorted(svc.state.aliases.items())]
        return web.json_response({"object": "list", "data": cards})

    async def forward(req: web.Request):
        raw = await req.read()
        try:
            body = json.loads(raw)
            requested = body["model"]
            if not isinstance(requested, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.json_response(protocol.error_body("the body must be JSON with a 'model' string"), status=400)
        aliases, adapters = svc.state.route_tables()
        base_name, base_digest = svc.base()
        target = decisions.route(requested, aliases, adapters, base_name, base_digest, rand())
        if target is None:
            return web.json_response(protocol.error_body(f"The model `{requested}` does not exist.", "NotFoundError",
                                                         404), status=404)
        labels = (target.model, target.version, target.digest)
        started = time.monotonic()
        headers = {"X-Fto-Served-Name": target.served, "X-Fto-Version": target.version}
        rate = svc.state.faults.get(target.served, 0.0)
        if rate and decisions.inject_fault(rate, rand()):
            svc.metrics.requests.labels(*labels, "500").inc()
            return web.json_response(protocol.error_body(f"fault injected for {target.served} (errorRate {rate})",
                                                         "InjectedFault", 500), status=500, headers=headers)
        body["model"] = target.served
        try:
            async with session.post(f"{svc.engine.url}{req.path}", json=body,
                                    timeout=aiohttp.ClientTimeout(total=600)) as upstream:
                resp = web.StreamResponse(status=upstream.status, headers={
                    **{k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}, **headers})
                await resp.prepare(req)
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                code = upstream.status
        except (aiohttp.ClientError, TimeoutError) as err:
            svc.metrics.requests.labels(*labels, "503").inc()
            return web.json_response(protocol.error_body(f"engine unavailable: {err or type(err).__name__}",
                                                         "ServiceUnavailable", 503), status=503, headers=headers)
        svc.metrics.requests.labels(*labels, str(code)).inc()
        svc.metrics.duration.labels(*labels).observe(time.monotonic() - started)
        return resp

    app = web.Application(client_max_size=16 << 20)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_post("/v1/completions", forward)
    return app


def admin_app(svc: AgentService, token: str) -> web.Application:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth_and_errors(req: web.Request, handler):
        given = req.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "Unauthorized", "message": "a valid bearer token is required"},
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler(req)
        except AgentError as err:
            return web.json_response(err.body(), status=err.status)

    async def body_of(req) -> dict:
        try:
            body = await req.json()
        except ValueError:
            raise decisions.bad_request("the body must be JSON") from None
        if not isinstance(body, dict):
            raise decisions.bad_request("the body must be a JSON object")
        return body

    def post(action):
        async def handler(req):
            return web.json_response(await action(await body_of(req)))
        return handler

    async def state(_req):
        return web.json_response(svc.state_view())

    app = web.Application(middlewares=[auth_and_errors])
    app.router.add_get("/admin/state", state)
    app.router.add_post("/admin/preload", post(svc.preload))
    app.router.add_post("/admin/flip", post(svc.flip))
    app.router.add_post("/admin/weights", post(svc.set_weights))
    app.router.add_post("/admin/unload", post(svc.unload))
    app.router.add_post("/admin/faults", post(svc.set_fault))
    return app
