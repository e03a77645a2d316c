"""hack/cluster: the command line of the local cluster."""
from __future__ import annotations

import argparse
import sys

from . import cluster, kubeconfig, supervisor
from .layout import Layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build what is missing, start every component, wait until all are healthy")
    down = sub.add_parser("down", help="stop every process this tool started")
    down.add_argument("--purge", action="store_true", help="also delete the cluster's data (etcd, MinIO, certs)")
    sub.add_parser("status", help="show each component's state; exit 1 if any is not healthy")
    sub.add_parser("env", help="print shell exports: KUBECONFIG, PATH (kubectl, helm), AWS_* for MinIO")
    user = sub.add_parser("user", help="mint a client-certificate identity and print its kubeconfig path")
    user.add_argument("name")
    user.add_argument("--group", action="append", default=[], help="a group the user is in (repeatable)")
    logs = sub.add_parser("logs", help="print the tail of a component's log")
    logs.add_argument("component")
    logs.add_argument("-n", type=int, default=50)
    args = parser.parse_args(argv)

    layout = Layout.default()
    if args.command == "up":
        try:
            cluster.up(layout)
        except supervisor.ComponentFailed as err:
            print(f"cluster: FAILED: {err}", file=sys.stderr)
            return 1
        print("\n".join(cluster.env_lines(layout)))
    elif args.command == "down":
        cluster.down(layout, purge=args.purge)
    elif args.command == "status":
        return 0 if cluster.status(layout) else 1
    elif args.command == "env":
        print("\n".join(cluster.env_lines(layout)))
    elif args.command == "user":
        print(kubeconfig.mint_user(layout, args.name, tuple(args.group)))
    elif args.command == "logs":
        print(supervisor.log_tail(layout, args.component, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
