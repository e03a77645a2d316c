"""Pure: the canary step machine. State = (step index, when that step started); the reconciler keeps
it in the model's production record, so a restarted operator resumes where the last one was."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str             # weigh | hold | complete | abort
    step: int = 0
    weight: int = 0
    wait: float = 0.0     # hold: seconds until the step ends


def next_action(steps: list, step: Optional[int], started: Optional[float], now: float,
                breach: bool = False) -> Action:
    """steps: spec.rollout.steps. step/started: the current step (None before the first). breach: the
    analysis crossed its threshold during this step."""
    if breach:
        return Action("abort", step or 0, 0)
    if not steps:
        return Action("complete")
    if step is None or started is None:
        return Action("weigh", 0, steps[0]["weight"])
    pause = float(steps[step].get("pauseSeconds", 60))
    left = started + pause - now
    if left > 0:
        return Action("hold", step, steps[step]["weight"], left)
    if step + 1 < len(steps):
        return Action("weigh", step + 1, steps[step + 1]["weight"])
    return Action("complete", step, 100)
