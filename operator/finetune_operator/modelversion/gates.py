"""Pure: a version's gates against its training metrics (and the production version's)."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Outcome:
    passed: bool
    results: list          # status.gates entries
    message: str


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def evaluate(gates: Optional[dict], metrics: dict, production: Optional[tuple] = None) -> Outcome:
    """gates: spec.gates. metrics: this version's manifest metrics. production: (version, metrics) of the
    version in production now, or None when there is none (mustBeatProduction then passes: nothing to beat)."""
    gates = gates or {}
    results = []
    for gate in gates.get("metrics") or []:
        name, value = gate["metric"], _number(metrics.get(gate["metric"]))
        if value is None:
            results.append({"metric": name, "passed": False,
                            "message": f"{name} is not among the training manifest's metrics {sorted(metrics)}"})
            continue
        fails = []
        if gate.get("min") is not None and value < gate["min"]:
            fails.append(f"{name} {value:g} < min {gate['min']:g}")
        if gate.get("max") is not None and value > gate["max"]:
            fails.append(f"{name} {value:g} > max {gate['max']:g}")
        bounds = " ".join(f"{k} {gate[k]:g}" for k in ("min", "max") if gate.get(k) is not None)
        results.append({"metric": name, "value": value, "passed": not fails,
                        "message": "; ".join(fails) or f"{name} {value:g} within {bounds}"})
    beat = gates.get("mustBeatProduction")
    if beat:
        results.append(_beat(beat, metrics, production))
    failed = [r for r in results if not r["passed"]]
    message = "; ".join(r["message"] for r in failed) if failed else \
        ("all gates passed" if results else "no gates")
    return Outcome(not failed, results, message)


def _beat(beat: dict, metrics: dict, production: Optional[tuple]) -> dict:
    name = beat["metric"]
    higher = bool(beat.get("higherIsBetter", False))
    margin = float(beat.get("minImprovement") or 0)
    mine = _number(metrics.get(name))
    entry = {"metric": f"{name} (vs production)"}
    if mine is None:
        return {**entry, "passed": False, "message": f"{name} is not among the training manifest's metrics"}
    entry["value"] = mine
    if production is None:
        return {**entry, "passed": True, "message": f"no version in production to beat; {name} {mine:g}"}
    version, prod_metrics = production
    theirs = _number((prod_metrics or {}).get(name))
    if theirs is None:
        return {**entry, "passed": False, "message": f"production version {version} has no {name} to compare with"}
    improvement = (mine - theirs) if higher else (theirs - mine)
    ok = improvement > 0 and improvement >= margin  # beating means strictly better
    word = "higher" if higher else "lower"
    return {**entry, "passed": ok,
            "message": f"{name} {mine:g} vs production {version} {theirs:g} ({word} is better, needs an improvement "
                       f"of at least {margin:g}, got {improvement:g})"}
