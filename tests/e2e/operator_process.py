"""The operator as a subprocess of the tests: the real `finetune-operator` command, admin kubeconfig."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """Starts/stops/kills one operator process; `restart()` keeps the same log file (appending)."""

    def __init__(self, cluster, namespaces: list, log_path: Path, env: dict | None = None,
                 args: tuple = (), kubeconfig: str | None = None):
        self.cluster, self.namespaces, self.log_path = cluster, list(namespaces), Path(log_path)
        self.env = dict(os.environ, KUBECONFIG=kubeconfig or str(cluster.kubeconfig), **(env or {}))
        self.args = list(args)
        self.metrics_port = free_port()
        self.proc = None

    def start(self) -> "OperatorProcess":
        scope = [a for ns in self.namespaces for a in ("--namespace", ns)]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "finetune_operator", *scope, "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
             "--metrics-address", f"127.0.0.1:{self.metrics_port}", *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def metrics(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease release — the crash the operator must survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
