"""What the agent believes: adapters it verified and loaded, aliases, faults.

Kept in memory and written to <adapter dir>/.fto-agent-state.json on every change, so an agent
restarted inside the same pod (the emptyDir outlives containers) still knows what it had loaded and
can reload it into an engine that restarted meanwhile. `loaded` is what the engine last said.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

STATE_FILE = ".fto-agent-state.json"


@dataclasses.dataclass
class AdapterRecord:
    name: str
    model: str
    version: str
    digest: str
    rank: int
    target_modules: list
    loaded_at: str
    files: dict                   # relative path -> sha256 hex (from the manifest)
    loaded: bool = True
    error: Optional[str] = None   # why it is not loaded, when it is not

    def view(self) -> dict:
        out = {"name": self.name, "model": self.model, "version": self.version, "digest": self.digest,
               "rank": self.rank, "targetModules": list(self.target_modules), "loadedAt": self.loaded_at,
               "loaded": self.loaded}
        if self.error:
            out["error"] = self.error
        return out


@dataclasses.dataclass
class AgentState:
    adapters: dict = dataclasses.field(default_factory=dict)   # served name -> AdapterRecord
    aliases: dict = dataclasses.field(default_factory=dict)    # model -> {served name: weight}
    faults: dict = dataclasses.field(default_factory=dict)     # served name -> error rate

    def loaded_names(self) -> set:
        return {n for n, a in self.adapters.items() if a.loaded}

    def routed_to(self, name: str) -> list:
        return sorted(m for m, ws in self.aliases.items() if ws.get(name))

    def alias_view(self) -> dict:
        return {model: [{"name": n, "version": self.adapters[n].version if n in self.adapters else "", "weight": w}
                        for n, w in sorted(ws.items())] for model, ws in sorted(self.aliases.items())}

    def route_tables(self) -> tuple[dict, dict]:
        """(aliases as {model: [(name, weight)]}, adapters as {name: (model, version, digest)}) for decisions.route."""
        return ({m: sorted(ws.items()) for m, ws in self.aliases.items()},
                {n: (a.model, a.version, a.digest) for n, a in self.adapters.items()})

    def to_json(self) -> dict:
        return {"adapters": [dataclasses.asdict(a) for a in self.adapters.values()],
                "aliases": self.aliases, "faults": self.faults}

    @classmethod
    def from_json(cls, doc: dict) -> "AgentState":
        adapters = {a["name"]: AdapterRecord(**a) for a in doc.get("adapters", [])}
        return cls(adapters=adapters, aliases=doc.get("aliases", {}), faults=doc.get("faults", {}))


def load(folder: Path) -> AgentState:
    path = folder / STATE_FILE
    try:
        return AgentState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return AgentState()


def save(folder: Path, state: AgentState) -> None:
    path = folder / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=1, sort_keys=True))
    os.replace(tmp, path)
