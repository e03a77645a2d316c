"""The FineTuneJob controller: observe -> decide -> act, one level-triggered pass, safe to repeat.

observe.py reads the job (CRD defaults applied once) and its children by their fixed names into
a frozen Snapshot; decide.py (with train.py, success.py and phase.py) turns it into the status
the job should have, the actions and the events, with no cluster, network or clock; act.py does
the actions idempotently and the runtime writes the status once, only if it changed, guarded by
the resourceVersion. A restarted operator therefore continues where the last one stopped and
never launches an attempt twice.
"""
from .reconciler import Reconciler

__all__ = ["Reconciler"]
