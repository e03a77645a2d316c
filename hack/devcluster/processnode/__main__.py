"""python -m devcluster.processnode: run the process node's agent."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .agent import Agent


def main() -> None:
    parser = argparse.ArgumentParser(prog="fto-process-node", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--pod-cidr", default="127.2.0.0/16")
    parser.add_argument("--apiserver-host", default="127.0.0.1")
    parser.add_argument("--apiserver-port", type=int, required=True)
    parser.add_argument("--health-address", default="127.0.0.1:16250")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    Agent(args.kubeconfig, args.state_dir, args.pod_cidr, args.apiserver_host, args.apiserver_port,
          args.health_address).run()


if __name__ == "__main__":
    main()
