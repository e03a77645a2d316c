"""`finetune-operator`: run the controllers. The operator image's entrypoint is this command.

kopf watches FineTuneJobs, ModelVersions and the Jobs and pods the operator creates, and feeds
their keys to the runtime's work queue (see runtime/). Two replicas elect a leader with a
Lease: only the leader reconciles, the other takes over within the Lease's duration.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os

import kopf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="finetune-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", action="append", default=[], help="watch only this namespace (repeatable)")
    scope.add_argument("--all-namespaces", action="store_true", default=True, help="watch every namespace (default)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                        help="address of the liveness endpoint kopf serves")
    parser.add_argument("--metrics-address", default=":8081",
                        help="host:port of the Prometheus /metrics endpoint ('' disables it)")
    parser.add_argument("--leader-election-lease", default="",
                        help="name of the coordination.k8s.io Lease replicas elect a leader with; empty: no "
                             "election, this process always acts (a single local run)")
    parser.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                        help="namespace of that Lease (default: $POD_NAMESPACE or default)")
    parser.add_argument("--record-namespace", default=os.environ.get("FTO_RECORD_NAMESPACE", ""),
                        help="namespace of the models' production records, one where tenants cannot write "
                             "(default: $FTO_RECORD_NAMESPACE, else the leader-election namespace)")
    parser.add_argument("--workers", type=int, default=8, help="reconciles running at once")
    parser.add_argument("--max-workers-per-namespace", type=int, default=0,
                        help="workers one namespace may hold at once (0: half of --workers); keeps a "
                             "namespace with slow passes from stalling the others")
    parser.add_argument("--resync-seconds", type=float, default=60.0,
                        help="how often every object is looked at even without a watch event")
    parser.add_argument("--moderation-endpoint", action="append", default=[], metavar="NAME=URL",
                        help="an in-cluster moderation endpoint spec.dataSafety.moderation.endpoint may name "
                             "(repeatable; added to $FTO_MODERATION_ENDPOINTS, the chart's "
                             "dataSafety.moderationEndpoints)")
    parser.add_argument("--standalone", action="store_true", help="accepted for compatibility; same as no Lease")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def with_moderation_flags(settings, flags: list):
    """settings with each --moderation-endpoint NAME=URL added to its moderation endpoints (checked)."""
    import dataclasses

    from .builders.settings import moderation_endpoints
    if not flags:
        return settings
    pairs = dict(flag.split("=", 1) if "=" in flag else (flag, "") for flag in flags)
    merged = moderation_endpoints({**settings.moderation_endpoints, **pairs})
    return dataclasses.replace(settings, moderation_endpoints=merged)


def build_runtime(args: argparse.Namespace):
    from . import kube, metrics
    from .builders.settings import OperatorSettings
    from .controllers import kinds
    from .runtime import leader
    from .runtime.controller import Runtime

    elector = leader.AlwaysLeader()
    if args.leader_election_lease and not args.standalone:
        from kubernetes import client
        elector = leader.LeaseElector(client.CoordinationV1Api(kube.api_client()),
                                      args.leader_election_namespace, args.leader_election_lease)
    if args.metrics_address:
        metrics.serve(args.metrics_address)
    return Runtime(with_moderation_flags(OperatorSettings.from_env(), args.moderation_endpoint), kinds(), elector,
                   namespaces=args.namespace or None,
                   workers=args.workers, resync_seconds=args.resync_seconds,
                   namespace_limit=args.max_workers_per_namespace or None)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # kopf logs every handled watch event at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from .handlers import watches
    from .modelversion import record

    record.configure(args.record_namespace or args.leader_election_namespace)
    runtime = watches.RUNTIME = build_runtime(args)
    explicit = args.namespace and not any(ch in ns for ns in args.namespace for ch in "*?![]")

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        # Watching named namespaces needs no cluster-wide scans of CRDs and namespaces, so a
        # namespaced install runs with a Role alone.
        settings.scanning.disabled = bool(explicit)
        settings.posting.enabled = False  # our events are posted by the runtime, with our reasons
        runtime.start()

    @kopf.on.cleanup()
    def shutdown(**_):
        runtime.stop()

    # kopf's own peering is off: leadership is the Lease's job, and kopf only feeds the queue.
    asyncio.run(kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace,  # empty with clusterwide: kopf iterates it, None is refused
        liveness_endpoint=args.liveness,
        standalone=True,
    ))


if __name__ == "__main__":
    main()
