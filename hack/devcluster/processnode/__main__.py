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
    parser.add_argument("--kubelet-port", type=int, default=0,
                        help="serve the kubelet API's /containerLogs here (for kubectl logs); 0: off")
    parser.add_argument("--kubelet-cert", type=Path, help="serving certificate for --kubelet-port")
    parser.add_argument("--kubelet-key", type=Path)
    parser.add_argument("--kubelet-client-ca", type=Path, help="CA of the apiserver's kubelet client certificate")
    args = parser.parse_args()
    tls = None
    if args.kubelet_port:
        if not (args.kubelet_cert and args.kubelet_key and args.kubelet_client_ca):
            parser.error("--kubelet-port needs --kubelet-cert, --kubelet-key and --kubelet-client-ca")
        tls = (args.kubelet_cert, args.kubelet_key, args.kubelet_client_ca)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    Agent(args.kubeconfig, args.state_dir, args.pod_cidr, args.apiserver_host, args.apiserver_port,
          args.health_address, kubelet_port=args.kubelet_port, kubelet_tls=tls).run()


if __name__ == "__main__":
    main()
