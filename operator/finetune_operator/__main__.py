"""`finetune-operator`: run the controllers. The operator image's entrypoint is this command.

It is kopf's runner with our handlers and settings: a liveness endpoint for the kubelet's
probe and peering so that two replicas never act on the same object at once.
"""
from __future__ import annotations

import argparse
import asyncio
import logging

import kopf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="finetune-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", action="append", default=[], help="watch only this namespace (repeatable)")
    scope.add_argument("--all-namespaces", action="store_true", default=True, help="watch every namespace (default)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                        help="address of the liveness endpoint kopf serves")
    parser.add_argument("--peering", default="finetune-operator",
                        help="kopf peering object name; replicas sharing it elect one active operator")
    parser.add_argument("--standalone", action="store_true", help="no peering: for a single local run")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    from . import handlers  # noqa: F401  (registers the handlers)

    explicit = args.namespace and not any(ch in ns for ns in args.namespace for ch in "*?![]")

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        # Watching named namespaces needs no cluster-wide scans of CRDs and namespaces, so a
        # namespaced install runs with a Role alone.
        settings.scanning.disabled = bool(explicit)

    asyncio.run(kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace or None,
        liveness_endpoint=args.liveness,
        peering_name=None if args.standalone else args.peering,
        standalone=args.standalone,
    ))


if __name__ == "__main__":
    main()
