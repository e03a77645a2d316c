"""The adapter agent's behaviour: preload, alias changes, unload, faults, and keeping the engine in
step with what the agent believes (also after the engine or the agent restarts).

Decisions are in decisions.py; this module does the I/O around them. Slow changes (preload, unload,
reloads after an engine restart) run one at a time under `load_lock`. Alias and fault changes take
no lock: they do no I/O, so on the event loop they are atomic, and a rollback's flip never waits
behind a download. An adapter being unloaded is marked not loaded first, so no alias can move to it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import shutil
import time
from pathlib import Path
from typing import Optional

from . import decisions, fetch, state as statemod
from .agent_metrics import AgentMetrics
from .decisions import AgentError, EngineLimits
from .engine_client import EngineClient, EngineModels, already_loaded

log = logging.getLogger("finetune-adapter-agent")
MANIFESTS = ".manifests"


@dataclasses.dataclass
class Settings:
    engine_url: str
    adapter_dir: Path          # the shared volume as the agent sees it
    engine_adapter_dir: str    # the same volume as the engine sees it
    max_lora_rank: int
    max_loras: int
    target_modules: frozenset
    base_model_digest: Optional[str]
    s3_endpoint: Optional[str]
    fault_injection: bool
    pod: str


@dataclasses.dataclass
class EngineView:
    ready: bool = False
    models: Optional[EngineModels] = None
    problem: Optional[str] = None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AgentService:
    def __init__(self, settings: Settings, engine: EngineClient, metrics: AgentMetrics):
        self.s = settings
        self.engine = engine
        self.metrics = metrics
        self.load_lock = asyncio.Lock()
        settings.adapter_dir.mkdir(parents=True, exist_ok=True)
        self.state = statemod.load(settings.adapter_dir)
        if self.state.adapters:
            log.info("state from a previous agent: %s", ", ".join(self.state.adapters))
        for record in self.state.adapters.values():
            record.loaded = False  # until the engine says so
        self.view = EngineView()
        self._s3 = None
        self._publish()

    # --- helpers ----------------------------------------------------------------------------------------------
    def s3(self):
        if self._s3 is None:
            self._s3 = fetch.client(self.s.s3_endpoint)
        return self._s3

    def limits(self) -> EngineLimits:
        reported = self.view.models.base_digest if self.view.models else None
        digest, _ = decisions.base_digest(self.s.base_model_digest, reported)
        return EngineLimits(self.s.max_lora_rank, self.s.max_loras, self.s.target_modules, digest)

    def base(self) -> tuple[Optional[str], Optional[str]]:
        models = self.view.models
        return (models.base_name if models else None), self.limits().base_digest

    def _publish(self) -> None:
        statemod.save(self.s.adapter_dir, self.state)
        self.metrics.adapters_loaded.set(len(self.state.loaded_names()))
        rows = []
        for model, weights in self.state.aliases.items():
            for name, weight in weights.items():
                rec = self.state.adapters.get(name)
                if rec is None and name == self.base()[0]:
                    rows.append((model, "base", self.base()[1] or "", weight))
                    continue
                rows.append((model, rec.version if rec else "", rec.digest if rec else "", weight))
        self.metrics.set_aliases(rows)

    def state_view(self) -> dict:
        base_name, base_digest = self.base()
        return {
            "pod": self.s.pod,
            "engine": {"url": self.s.engine_url, "ready": self.view.ready, "maxLoraRank": self.s.max_lora_rank,
                       "maxLoras": self.s.max_loras, "targetModules": sorted(self.s.target_modules), **({"problem": self.view.problem} if self.view.problem else {})},
            "baseModel": {"name": base_name, "digest": base_digest},
            "adapters": [a.view() for _, a in sorted(self.state.adapters.items())],
            "aliases": self.state.alias_view(),
            "faults": {n: {"errorRate": r} for n, r in sorted(self.state.faults.items())},
        }

    async def refresh_engine(self) -> EngineModels:
        try:
            models = await self.engine.models()
        except AgentError as err:
            self.view = EngineView(False, None, err.message)
            raise
        _, problem = decisions.base_digest(self.s.base_model_digest, models.base_digest)
        self.view = EngineView(models.base_name is not None and problem is None, models,
                               problem or (None if models.base_name else "the engine lists no base model"))
        return models

    # --- preload ----------------------------------------------------------------------------------------------
    async def preload(self, body: dict) -> dict:
        for key in ("model", "version", "adapterUri", "manifestUri"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise decisions.bad_request(f"{key} is required (a string)")
        started = time.monotonic()
        raw = await asyncio.to_thread(fetch.get_bytes, self.s3(), body["manifestUri"])
        manifest = decisions.parse_manifest(raw, body.get("manifestDigest"))
        name = decisions.served_name(body["model"], body["version"], manifest.digest)
        async with self.load_lock:
            record = self.state.adapters.get(name)
            if record and record.loaded:
                return {"name": name, "alreadyLoaded": True, "seconds": round(time.monotonic() - started, 3)}
            await self.refresh_engine()
            decisions.check_compat(manifest, self.limits())
            folder = self.s.adapter_dir / name
            staging = self.s.adapter_dir / f".{name}.partial"
            try:
                got = await asyncio.to_thread(fetch.download_files, self.s3(), body["adapterUri"], manifest, staging)
                decisions.verify_files(manifest, got)
            except AgentError:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
            self._write_manifest(name, raw)
            try:
                await self._engine_load(name)
            except AgentError:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self.state.adapters[name] = statemod.AdapterRecord(
                name=name, model=body["model"], version=body["version"], digest=manifest.digest, rank=manifest.rank,
                target_modules=list(manifest.target_modules), loaded_at=_now(),
                files={f.path: f.sha256 for f in manifest.files})
            self._publish()
        seconds = time.monotonic() - started
        self.metrics.load_seconds.observe(seconds)
        log.info("preloaded %s from %s in %.2fs", name, body["adapterUri"], seconds)
        return {"name": name, "alreadyLoaded": False, "seconds": round(seconds, 3)}

    def _write_manifest(self, name: str, raw: bytes) -> None:
        folder = self.s.adapter_dir / MANIFESTS
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.json").write_bytes(raw)

    async def _engine_load(self, name: str) -> None:
        status, text = await self.engine.load(name, f"{self.s.engine_adapter_dir.rstrip('/')}/{name}")
        if status == 200 or already_loaded(status, text):
            # A name is content-addressed: if the engine already has it, it has these very weights.
            return
        raise AgentError(502, "EngineRejected", f"the engine refused to load {name} ({status}): {text[:500]}")

    # --- aliases ----------------------------------------------------------------------------------------------
    async def flip(self, body: dict) -> dict:
        model, name = body.get("model"), body.get("name")
        if not isinstance(model, str) or not model or not isinstance(name, str) or not name:
            raise decisions.bad_request("model and name are required")
        return await self.set_weights({"model": model, "weights": {name: 100}})

    async def set_weights(self, body: dict) -> dict:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise decisions.bad_request("model is required")
        base_name, _ = self.base()
        # The base model is always there: an alias may point at it (a rollback with no earlier version).
        servable = self.state.loaded_names() | ({base_name} if base_name else set())
        weights = decisions.validate_weights(body.get("weights"), servable)
        self.state.aliases[model] = weights
        self._publish()
        log.info("alias %s -> %s", model, weights)
        return {"model": model, "aliases": self.state.alias_view()[model]}

    # --- unload -----------------------------------------------------------------------------------------------
    async def unload(self, body: dict) -> dict:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise decisions.bad_request("name is required")
        async with self.load_lock:
            record = self.state.adapters.get(name)
            if record is None:
                raise AgentError(404, "NotFound", f"{name} is not known to this agent")
            users = self.state.routed_to(name)
            if users:
                raise AgentError(409, "InUse", f"{name} still receives traffic from alias {', '.join(users)}: "
                                               "flip or re-weight first")
            was_loaded, record.loaded = record.loaded, False   # from here on no alias may move to it
            try:
                status, text = await self.engine.unload(name)
            except AgentError:
                record.loaded = was_loaded
                raise
            if status != 200 and status != 404:  # 404: the engine already forgot it (restarted)
                record.loaded = was_loaded
                raise AgentError(502, "EngineRejected", f"the engine refused to unload {name} ({status}): {text[:500]}")
            del self.state.adapters[name]
            self.state.faults.pop(name, None)
            # Only now: vLLM reloads a registered adapter from its path after an LRU eviction.
            shutil.rmtree(self.s.adapter_dir / name, ignore_errors=True)
            (self.s.adapter_dir / MANIFESTS / f"{name}.json").unlink(missing_ok=True)
            self._publish()
        log.info("unloaded %s", name)
        return {"name": name, "unloaded": True}

    # --- faults -----------------------------------------------------------------------------------------------
    async def set_fault(self, body: dict) -> dict:
        if not self.s.fault_injection:
            raise AgentError(403, "FaultInjectionDisabled", "start the agent with --enable-fault-injection")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise decisions.bad_request("name is required")
        rate = decisions.fault_rate(body.get("errorRate"))
        if rate:
            self.state.faults[name] = rate
        else:
            self.state.faults.pop(name, None)
        self._publish()
        return {"name": name, "errorRate": rate}

    # --- keeping the engine in step ---------------------------------------------------------------------------
    async def sync_once(self) -> None:
        """Reloads what the agent believes loaded but the engine lacks (an engine restart); records the truth."""
        async with self.load_lock:
            try:
                models = await self.refresh_engine()
            except AgentError:
                changed = any(a.loaded for a in self.state.adapters.values())
                for a in self.state.adapters.values():
                    a.loaded, a.error = False, "engine unreachable"
                if changed:
                    self._publish()
                return
            changed = False
            for name, record in self.state.adapters.items():
                if name in models.adapters:
                    changed |= not record.loaded
                    record.loaded, record.error = True, None
                    continue
                changed = True
                problem = await self._reload(record)
                record.loaded, record.error = problem is None, problem
            if changed:
                self._publish()

    async def _reload(self, record: statemod.AdapterRecord) -> Optional[str]:
        """None when reloaded, else why not."""
        folder = self.s.adapter_dir / record.name
        got = await asyncio.to_thread(fetch.hash_folder, folder, list(record.files))
        bad = sorted(p for p, sha in record.files.items() if got.get(p) != sha)
        if bad:
            return f"local files missing or changed: {', '.join(bad)}; preload again"
        try:
            await self._engine_load(record.name)
        except AgentError as err:
            return err.message
        log.info("reloaded %s into the engine", record.name)
        return None

    async def sync_forever(self, interval: float) -> None:
        while True:
            try:
                await self.sync_once()
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("sync with the engine failed")
            await asyncio.sleep(interval)
