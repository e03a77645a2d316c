"""How the controllers run: watches feed a work queue; workers reconcile one object at a time.

kopf watches the resources and hands every event to `Runtime.enqueue` (no kopf finalizers,
annotations or progress storage: the objects stay exactly as users and Argo CD wrote them).
Workers take keys from the queue, read the object fresh, run its kind's reconciler, write the
status with a resourceVersion precondition, then post the events the pass produced. A
reconciler asks to be called again after N seconds (progress polling, backoff, TTL) instead of
running on a timer. Only the replica holding the leader Lease acts.
"""
