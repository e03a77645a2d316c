"""Every decision the adapter agent makes, as pure functions: names, manifests, compatibility,
routing and fault injection. No I/O, no clock; randomness comes in as an argument.

Errors are AgentError(status, reason, message); the admin API answers them as
{"error": reason, "message": message} with that status.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from finetune_api import manifest as manifestmod, naming
from finetune_api.manifest import AdapterManifest as Manifest, ManifestError


class AgentError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def body(self) -> dict:
        return {"error": self.reason, "message": self.message}


def bad_request(message: str) -> AgentError:
    return AgentError(400, "InvalidRequest", message)


# --- names ------------------------------------------------------------------------------------------------------

def served_name(model: str, version: str, digest: str) -> str:
    """finetune_api.naming.served_name; a bad part is the caller's InvalidRequest."""
    try:
        return naming.served_name(model, version, digest)
    except ValueError as err:
        raise bad_request(str(err)) from None


# --- manifests (the contract is finetune_api.manifest) ----------------------------------------------------------

def parse_manifest(raw: bytes, expected_digest: Optional[str] = None) -> Manifest:
    """The trainer's AdapterManifest, checked, and loadable at runtime (422 with the contract's reason if not)."""
    try:
        manifest = manifestmod.parse(raw, expected_digest)
        manifestmod.require_adapter(manifest)
    except ManifestError as err:
        raise AgentError(422, err.reason, err.message) from None
    return manifest


def verify_files(manifest: Manifest, actual: dict) -> None:
    """actual: relative path -> sha256 hex of what was downloaded. DigestMismatch names every bad file."""
    bad = manifestmod.mismatches(manifest, {path: (sha, None) for path, sha in actual.items()})
    if bad:
        raise AgentError(422, "DigestMismatch", "downloaded adapter files do not match the manifest: " + ", ".join(bad))


# --- compatibility ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EngineLimits:
    max_lora_rank: int
    max_loras: int
    target_modules: frozenset   # module names the engine can apply LoRA to
    base_digest: Optional[str]  # None: unknown (not configured and not reported by the engine)


def check_compat(manifest: Manifest, limits: EngineLimits) -> None:
    """Refuses, before anything is loaded, an adapter the engine cannot serve correctly."""
    if manifest.rank > limits.max_lora_rank:
        raise AgentError(422, "RankTooLarge", f"adapter rank {manifest.rank} is greater than the engine's "
                                              f"max LoRA rank {limits.max_lora_rank} (--max-lora-rank)")
    missing = sorted(set(manifest.target_modules) - limits.target_modules)
    if missing:
        raise AgentError(422, "TargetModulesMissing", f"the engine cannot apply LoRA to {', '.join(missing)} "
                                                      f"(supported: {', '.join(sorted(limits.target_modules))})")
    if limits.base_digest is None:
        raise AgentError(409, "BaseModelUnknown", "the engine's base model digest is unknown: give the agent "
                                                  "--base-model-digest")
    if manifest.base_digest != limits.base_digest:
        raise AgentError(422, "BaseModelMismatch", f"the adapter was trained on base model {manifest.base_name!r} "
                                                   f"{manifest.base_digest or '(no digest)'}, but the engine serves "
                                                   f"{limits.base_digest}")


def base_digest(configured: Optional[str], reported: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(digest to check adapters against, problem). The flag wins; a disagreeing engine is a problem to show."""
    if configured and reported and configured != reported:
        return configured, f"the engine reports base digest {reported}, the agent is configured with {configured}"
    return configured or reported or None, None


# --- aliases and routing ----------------------------------------------------------------------------------------

def validate_weights(weights: dict, loaded: set) -> dict:
    """{served name: percent} summing to 100, every name loaded (or the base model, which `loaded`
    then includes); zero weights are dropped."""
    if not isinstance(weights, dict) or not weights:
        raise bad_request("weights must be a non-empty object {served name: percent}")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100:
            raise bad_request(f"weight of {name!r} must be an integer 0..100 (got {w!r})")
    if sum(weights.values()) != 100:
        raise bad_request(f"weights must sum to 100 (got {sum(weights.values())})")
    missing = sorted(n for n, w in weights.items() if w and n not in loaded)
    if missing:
        raise AgentError(409, "NotLoaded", f"not loaded on this replica: {', '.join(missing)}")
    return {n: w for n, w in weights.items() if w}


def choose(entries: list, r: float) -> str:
    """Weighted choice: entries [(name, weight)] with weights summing to 100, r uniform in [0, 1)."""
    point = r * sum(w for _, w in entries)
    for name, weight in entries:
        if point < weight:
            return name
        point -= weight
    return entries[-1][0]


@dataclasses.dataclass(frozen=True)
class Route:
    served: str    # the name the engine knows
    model: str     # metric label: the alias / logical model
    version: str
    digest: str


def route(requested: str, aliases: dict, adapters: dict, base_name: Optional[str], base_digest_: Optional[str],
          r: float) -> Optional[Route]:
    """Where a client request for `requested` goes: an alias (weighted), a served name, the base model, or None.

    aliases: {model: [(served name, weight)]}; adapters: {served name: (model, version, digest)}.
    """
    if requested in aliases and aliases[requested]:
        served = choose(aliases[requested], r)
        if served not in adapters and base_name and served == base_name:  # the alias rolled back to the base
            return Route(served, requested, "base", base_digest_ or "")
        model, version, digest = adapters.get(served, (requested, "", ""))
        return Route(served, requested, version, digest)
    if requested in adapters:
        model, version, digest = adapters[requested]
        return Route(requested, model, version, digest)
    if base_name and requested == base_name:
        return Route(requested, requested, "base", base_digest_ or "")
    return None


def inject_fault(error_rate: float, r: float) -> bool:
    return r < error_rate


def fault_rate(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise bad_request(f"errorRate must be a number in 0..1 (got {value!r})")
    return float(value)
