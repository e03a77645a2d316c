"""The kinds this operator reconciles, and how each one's reconciler is found."""
from __future__ import annotations

import importlib
import importlib.util

from . import metrics
from .runtime.controller import Kind


def kinds() -> list:
    from .finetunejob import Reconciler as FineTuneJobReconciler
    found = [Kind("finetunejobs", FineTuneJobReconciler, forget=lambda ns, name: metrics.JOBS.forget((ns, name)),
                  ignore_own_status_writes=True)]
    if importlib.util.find_spec(f"{__package__}.modelversion") is None:
        return found
    reconciler = getattr(importlib.import_module(f"{__package__}.modelversion"), "ModelVersionReconciler", None)
    if reconciler is None:  # the package is there but not (yet) complete
        return found
    found.append(Kind("modelversions", reconciler,
                      forget=lambda ns, name: metrics.MODEL_VERSIONS.forget((ns, name))))
    return found
