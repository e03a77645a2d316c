"""The kubelet's container-log endpoint, so `kubectl logs` works for pods on the process node.

The apiserver serves `pods/log` by calling the node's kubelet API over TLS at
`https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>`
with its kubelet client certificate. The agent answers that one path from the log files it
already writes (`pods/<ns>_<pod>_<uid8>/logs/<container>.log`). Only a client certificate from
the cluster CA with the apiserver's kubelet-client name is accepted: users reach logs through
the apiserver and its RBAC (`pods/log`), never by calling the node directly.
"""
from __future__ import annotations

import http.server
import logging
import ssl
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger("process-node")

APISERVER_CLIENT_NAME = "kube-apiserver-kubelet-client"
FOLLOW_POLL_SECONDS = 0.3
CHUNK = 64 * 1024


class LogRequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(path: str) -> tuple[str, str, str, dict]:
    """'/containerLogs/ns/pod/container?tailLines=5' -> (ns, pod, container, options)."""
    parsed = urllib.parse.urlsplit(path)
    parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
    if len(parts) != 4 or parts[0] != "containerLogs":
        raise LogRequestError(404, f"the process node serves only /containerLogs/<namespace>/<pod>/<container>, "
                                   f"not {parsed.path}")
    query = urllib.parse.parse_qs(parsed.query)

    def number(name: str) -> Optional[int]:
        if name not in query:
            return None
        try:
            value = int(query[name][-1])
        except ValueError:
            raise LogRequestError(400, f"{name} must be an integer, got {query[name][-1]!r}") from None
        if value < 0:
            raise LogRequestError(400, f"{name} must not be negative")
        return value

    def flag(name: str) -> bool:
        return query.get(name, ["false"])[-1].lower() in ("true", "1")

    options = {"tail_lines": number("tailLines"), "limit_bytes": number("limitBytes"),
               "follow": flag("follow"), "previous": flag("previous")}
    return parts[1], parts[2], parts[3], options


def select(data: bytes, tail_lines: Optional[int] = None, limit_bytes: Optional[int] = None) -> bytes:
    """The part of a log `kubectl logs --tail/--limit-bytes` asks for: the last tail_lines lines,
    then at most limit_bytes bytes from their start."""
    if tail_lines is not None:
        if tail_lines == 0:
            data = b""
        else:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail_lines:])
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data


def find_log(pods_dir: Path, namespace: str, pod: str, container: str) -> Path:
    """The container's log file; a pod recreated under the same name has the newest directory."""
    dirs = sorted(pods_dir.glob(f"{glob_escape(namespace)}_{glob_escape(pod)}_*"),
                  key=lambda d: d.stat().st_mtime, reverse=True)
    dirs = [d for d in dirs if d.name.count("_") == 2]  # names and namespaces never contain "_"
    if not dirs:
        raise LogRequestError(404, f"pod {namespace}/{pod} has never run on this node")
    path = dirs[0] / "logs" / f"{container}.log"
    if not path.exists():
        raise LogRequestError(400, f"container {container} in pod {namespace}/{pod} has not started yet")
    return path


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


class ContainerLogServer:
    """HTTPS server for /containerLogs. is_running(ns, pod, container) tells follow when to stop."""

    def __init__(self, address: tuple[str, int], pods_dir: Path, cert: Path, key: Path, ca: Path,
                 is_running: Callable[[str, str, str], bool], stopping: threading.Event):
        self.pods_dir, self.is_running, self.stopping = pods_dir, is_running, stopping
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
        self.httpd = http.server.ThreadingHTTPServer(address, self._handler())
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)

    def serve_in_background(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="container-logs").start()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked bodies are HTTP/1.1; under 1.0 they reach kubectl raw

            def log_message(self, fmt, *args):  # the agent's log is for pods, not for every log read
                log.debug("container logs: " + fmt, *args)

            def do_GET(self):  # noqa: N802
                try:
                    if _common_name(self.connection.getpeercert()) != APISERVER_CLIENT_NAME:
                        raise LogRequestError(403, "only the apiserver reads logs from this node; use kubectl logs")
                    namespace, pod, container, options = parse_request(self.path)
                    if options["previous"]:
                        raise LogRequestError(400, "the process node keeps one log per container, restarts "
                                                   "appended to it; read it without --previous")
                    path = find_log(server.pods_dir, namespace, pod, container)
                except LogRequestError as err:
                    self._text(err.status, str(err))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    server._stream(path, options, (namespace, pod, container), self._chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the client went away (kubectl logs -f interrupted)

            def _chunk(self, data: bytes) -> None:
                if data:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

            def _text(self, status: int, message: str) -> None:
                body = (message + "\n").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _stream(self, path: Path, options: dict, container: tuple[str, str, str], write) -> None:
        limit = options["limit_bytes"]
        with open(path, "rb") as f:
            first = select(f.read(), options["tail_lines"], limit)
            write(first)
            if not options["follow"]:
                return
            sent = len(first)
            while limit is None or sent < limit:
                running = self.is_running(*container)
                data = f.read(CHUNK)  # read after the check, so nothing written before the exit is lost
                if data:
                    if limit is not None:
                        data = data[:limit - sent]
                    write(data)
                    sent += len(data)
                    continue
                if not running or self.stopping.is_set():
                    return
                time.sleep(FOLLOW_POLL_SECONDS)


def _common_name(peercert: Optional[dict]) -> Optional[str]:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None
