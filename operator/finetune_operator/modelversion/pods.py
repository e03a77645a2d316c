"""Pure: serving pods and what their adapter agents report (/admin/state), as plain values."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Pod:
    name: str
    ip: str


def ready_pods(pod_list: list) -> list[Pod]:
    """Pods that are Ready, not terminating, and have an IP, sorted by name."""
    out = []
    for pod in pod_list:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or not status.get("podIP"):
            continue
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            out.append(Pod(meta["name"], status["podIP"]))
    return sorted(out, key=lambda p: p.name)


def label_selector(match_labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((match_labels or {}).items()))


@dataclasses.dataclass(frozen=True)
class PodView:
    """One pod as its agent reported it; error is set (and the rest empty) when it could not be asked."""
    pod: Pod
    error: str = ""
    loaded: tuple = ()            # served names loaded in the engine
    aliases: tuple = ()           # ((model, ((served name, weight), ...)), ...)
    max_lora_rank: Optional[int] = None
    base_digest: str = ""
    base_name: str = ""
    modules: Optional[tuple] = None  # module names of the base model, if the agent reports them

    @property
    def ok(self) -> bool:
        return not self.error

    def weights(self, model: str) -> dict:
        return dict(dict(self.aliases).get(model, ()))

    def alias_target(self, model: str) -> str:
        """The served name holding 100 % of the model's alias ('' if none or split)."""
        weights = self.weights(model)
        full = [n for n, w in weights.items() if w == 100]
        return full[0] if full else ""

    def alias_summary(self, model: str) -> str:
        weights = {n: w for n, w in self.weights(model).items() if w}
        if len(weights) == 1:
            return next(iter(weights))
        return ",".join(f"{n}={w}" for n, w in sorted(weights.items()))


def view_from_state(pod: Pod, state: dict) -> PodView:
    engine, base = state.get("engine") or {}, state.get("baseModel") or {}
    aliases = tuple(sorted((model, tuple(sorted((e.get("name", ""), int(e.get("weight", 0))) for e in entries)))
                           for model, entries in (state.get("aliases") or {}).items()))
    modules = base.get("modules") if base.get("modules") is not None else engine.get("targetModules")
    return PodView(pod=pod, loaded=tuple(sorted(a.get("name", "") for a in state.get("adapters") or []
                                            if a.get("loaded", True))),
                   aliases=aliases, max_lora_rank=engine.get("maxLoraRank"), base_digest=base.get("digest") or "",
                   base_name=base.get("name") or "", modules=tuple(modules) if modules is not None else None)


def served_by(views: list[PodView], model: str, name: str, messages: Optional[dict] = None) -> list[dict]:
    """status.servedBy: per pod, whether this version is loaded, where the alias points, its weight."""
    messages = messages or {}
    out = []
    for v in views:
        entry = {"pod": v.pod.name, "ip": v.pod.ip, "loaded": name in v.loaded,
                 "aliasTarget": v.alias_summary(model), "weight": v.weights(model).get(name, 0)}
        message = messages.get(v.pod.name) or v.error
        if message:
            entry["message"] = message[:4000]
        out.append(entry)
    return out
