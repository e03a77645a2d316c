"""Readiness probes (httpGet, tcpSocket, exec) with kubelet's thresholds and timing."""
from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request


def _port(value, container: dict) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe names port {value!r}, which the container does not declare")


def check(probe: dict, container: dict, pod_ip: str, env: dict) -> bool:
    timeout = probe.get("timeoutSeconds", 1)
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://{get.get('host') or pod_ip}:{_port(get['port'], container)}{get.get('path', '/')}"
            req = urllib.request.Request(url, headers={h["name"]: h["value"] for h in get.get("httpHeaders") or []})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return 200 <= resp.status < 400
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            with socket.create_connection((tcp.get("host") or pod_ip, _port(tcp["port"], container)), timeout=timeout):
                return True
        if "exec" in probe:
            return subprocess.run(probe["exec"]["command"], env=env, timeout=timeout, capture_output=True).returncode == 0
    except (urllib.error.URLError, OSError, ValueError, subprocess.TimeoutExpired):
        return False
    return False


class ReadinessTracker:
    """Feeds probe results through initialDelay/period/success/failure thresholds."""

    def __init__(self, probe: dict | None, started_at: float):
        self.probe = probe
        self.ready = probe is None
        self._next = started_at + (probe or {}).get("initialDelaySeconds", 0)
        self._successes = self._failures = 0

    def due(self, now: float) -> bool:
        return self.probe is not None and now >= self._next

    def record(self, ok: bool, now: float) -> None:
        self._next = now + self.probe.get("periodSeconds", 10)
        if ok:
            self._successes, self._failures = self._successes + 1, 0
            if self._successes >= self.probe.get("successThreshold", 1):
                self.ready = True
        else:
            self._successes, self._failures = 0, self._failures + 1
            if self._failures >= self.probe.get("failureThreshold", 3):
                self.ready = False
