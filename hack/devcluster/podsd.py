"""Pod discovery for Prometheus over HTTP (`python -m devcluster.podsd`).

Debian's prometheus is built without the Kubernetes service discovery (kubernetes_sd_configs is
refused as an unknown field), so this small process does its job: it lists the pods through our
apiserver under the Prometheus identity (RBAC: list/watch pods cluster-wide, nothing else) and
serves them in Prometheus' HTTP SD format with the `__meta_kubernetes_pod_*` labels that
kubernetes_sd would give, so the relabelling in prometheus.render_config is the usual one.
Only pods annotated prometheus.io/scrape=true are listed.

Like kubernetes_sd it lists once and then watches (raw JSON, no client models): Prometheus asks
every second, and a cluster may hold thousands of pods (the operator's scale benchmark), so a
list per request would cost the apiserver and this process a core between them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

META = "__meta_kubernetes_"


def _label_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def targets(pods: list[dict]) -> list[dict]:
    """HTTP SD target groups, one per annotated pod that has an IP (pods as API dicts)."""
    groups = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        annotations = meta.get("annotations") or {}
        ip = status.get("podIP")
        if annotations.get("prometheus.io/scrape") != "true" or not ip or meta.get("deletionTimestamp"):
            continue
        labels = {f"{META}namespace": meta.get("namespace", ""), f"{META}pod_name": meta.get("name", ""),
                  f"{META}pod_ip": ip, f"{META}pod_phase": status.get("phase", ""),
                  f"{META}pod_node_name": (pod.get("spec") or {}).get("nodeName", "")}
        labels.update({f"{META}pod_label_{_label_name(k)}": v for k, v in (meta.get("labels") or {}).items()})
        labels.update({f"{META}pod_annotation_{_label_name(k)}": v for k, v in annotations.items()
                       if k.startswith("prometheus.io/")})
        groups.append({"targets": [ip], "labels": labels})
    return sorted(groups, key=lambda g: (g["labels"][f"{META}namespace"], g["labels"][f"{META}pod_name"]))


class PodCache:
    """The annotated pods, kept current by list + watch; other pods are dropped on arrival."""

    def __init__(self, api):
        self.api, self.pods, self.synced = api, {}, threading.Event()
        self.lock = threading.Lock()

    def targets(self) -> list[dict]:
        with self.lock:
            return targets(list(self.pods.values()))

    def _keep(self, pod: dict) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        with self.lock:
            if (pod["metadata"].get("annotations") or {}).get("prometheus.io/scrape") == "true":
                self.pods[key] = pod
            else:
                self.pods.pop(key, None)

    def _drop(self, pod: dict) -> None:
        with self.lock:
            self.pods.pop((pod["metadata"]["namespace"], pod["metadata"]["name"]), None)

    def run(self) -> None:
        from kubernetes import client
        from kubernetes.watch.watch import iter_resp_lines
        core = client.CoreV1Api(self.api)
        while True:
            try:
                listed = json.loads(core.list_pod_for_all_namespaces(_preload_content=False, _request_timeout=30).data)
                with self.lock:
                    self.pods = {}
                for pod in listed["items"]:
                    self._keep(pod)
                self.synced.set()
                rv = listed["metadata"]["resourceVersion"]
                while True:  # each watch ends after timeout_seconds; resume from the last version seen
                    resp = core.list_pod_for_all_namespaces(watch=True, resource_version=rv, timeout_seconds=240,
                                                            allow_watch_bookmarks=True, _preload_content=False,
                                                            _request_timeout=300)
                    for line in iter_resp_lines(resp):
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # 410 Gone: the version is too old; list again
                            raise RuntimeError(event["object"].get("message", "watch error"))
                        rv = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._keep(event["object"])
                        elif event["type"] == "DELETED":
                            self._drop(event["object"])
            except Exception as err:  # apiserver restarting, watch expired: list again shortly
                print(f"podsd: {err}; listing again", file=sys.stderr, flush=True)
                time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devcluster.podsd", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, help="an identity that may list pods cluster-wide")
    parser.add_argument("--address", required=True, help="host:port to serve /targets and /healthz on")
    args = parser.parse_args(argv)
    from kubernetes import config
    cache = PodCache(config.new_client_from_config(config_file=args.kubeconfig))
    threading.Thread(target=cache.run, daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path not in ("/healthz", "/targets"):
                return self._send(404, b"not found")
            if not cache.synced.is_set():  # Prometheus keeps its last good targets on an error
                return self._send(503, b"pods not listed yet")
            if self.path == "/healthz":
                return self._send(200, b"ok")
            return self._send(200, json.dumps(cache.targets()).encode(), "application/json")

        def _send(self, code: int, body: bytes, kind: str = "text/plain"):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):  # one line per poll every second would flood the log
            pass

    host, _, port = args.address.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"podsd: serving http://{args.address}/targets", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
