"""kopf handlers: thin functions that turn watch events into work-queue keys.

Importing this package registers them with kopf. They only enqueue: the reconcilers run in
the runtime's workers (see runtime/), and kopf stores nothing on the objects (no finalizers,
no annotations), because event handlers are the one kind of kopf handler that needs no state.
"""
from . import watches

__all__ = ["watches"]
