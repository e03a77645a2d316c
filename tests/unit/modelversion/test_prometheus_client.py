"""The Prometheus client: allow-listed, canonical URLs only; fixed words on failure (never the
server's body); a total deadline and a size cap. Servers are loopback http.server threads."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from finetune_operator.modelversion import prometheus

SECRET = "AKIA-LEAKED-SECRET-0123456789"


@pytest.mark.parametrize("url, canonical", [
    ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
    ("HTTP://Prom.Monitoring:9090/", "http://prom.monitoring:9090"),
    ("https://thanos.example/prom/", "https://thanos.example/prom"),
    ("http://[::1]:9090", "http://[::1]:9090"),
    ("http://user:pw@prom:9090", None),
    ("http://prom:9090/#/../../admin", None),
    ("http://prom:9090/?x=1", None),
    ("http://prom:9090/a/../b", None),
    ("http://prom%2e:9090", None),
    ("http://prom:99999", None),
    ("ftp://prom:21", None),
    ("", None),
])
def test_only_plain_base_urls_have_a_canonical_form(url, canonical):
    assert prometheus.endpoint(url) == canonical


@pytest.mark.parametrize("url, allowed", [
    ("http://prom:9090", True), ("http://PROM:9090/", True), ("http://prom:9091", False),
    ("http://prom:9090/#x", False), ("http://evil@prom:9090", False), ("http://prom:9090/other", False)])
def test_the_allow_list_is_compared_canonically(url, allowed):
    assert (prometheus.allowed(url, ["http://prom:9090/", ""]) is not None) is allowed


class _Server:
    def __init__(self, handler):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _answering(status: int, body: bytes, drip: float = 0.0, location: str = ""):
    class Handler(http.server.BaseHTTPRequestHandler):
        seen: list = []

        def do_GET(self):
            Handler.seen.append(self.path)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                if drip:
                    time.sleep(drip)
                try:
                    self.wfile.write(body[i:i + 1] if drip else body[i:])
                    self.wfile.flush()
                except OSError:
                    return
                if not drip:
                    return

        def log_message(self, *args):
            pass
    return Handler


@pytest.fixture
def serve():
    servers = []

    def start(*args, **kwargs):
        handler = _answering(*args, **kwargs)
        servers.append(_Server(handler))
        return servers[-1].url, handler
    yield start
    for s in servers:
        s.close()


VECTOR = json.dumps({"status": "success", "data": {"resultType": "vector",
                                                   "result": [{"metric": {}, "value": [1, "0.25"]}]}}).encode()


def test_a_value_is_read_from_an_allowed_server_at_the_path_the_operator_builds(serve):
    url, handler = serve(200, VECTOR)
    assert prometheus.query(url + "/", 'up{namespace="a"}', [url]) == 0.25
    assert handler.seen[0].startswith("/api/v1/query?query=up%7Bnamespace%3D%22a%22%7D")


@pytest.mark.parametrize("behaviour, status, body, words", [
    ("an error status shows only its code", 500, f"internal error: {SECRET}".encode(), "Prometheus answered HTTP 500"),
    ("a non-JSON 200 is not repeated", 200, f"<html>{SECRET}</html>".encode(), "Prometheus's answer was not a query result"),
    ("an error document's words are not repeated", 200,
     json.dumps({"status": "error", "errorType": "bad_data", "error": SECRET}).encode(),
     "Prometheus refused the query (bad_data)"),
    ("an unknown errorType is not repeated", 200,
     json.dumps({"status": "error", "errorType": SECRET, "error": SECRET}).encode(), "Prometheus refused the query"),
    ("a redirect is not followed", 302, b"", "Prometheus answered HTTP 302"),
])
def test_failures_are_fixed_words_without_the_servers_body(serve, behaviour, status, body, words):
    url, _ = serve(status, body, location="http://169.254.169.254/latest/meta-data/")
    with pytest.raises(prometheus.QueryError) as err:
        prometheus.query(url, "up", [url])
    assert str(err.value).startswith(words) and SECRET not in str(err.value)


def test_a_url_off_the_allow_list_is_never_dialled(serve):
    url, handler = serve(200, VECTOR)
    with pytest.raises(prometheus.QueryError) as err:
        prometheus.query(url, "up", ["http://127.0.0.1:1"])
    assert "not on the operator's allow-list" in str(err.value) and handler.seen == []


def test_a_dripping_server_is_cut_off_at_the_total_deadline(serve):
    url, _ = serve(200, VECTOR, drip=0.05)   # ~6 s for the whole body; every byte well inside a socket timeout
    start = time.monotonic()
    with pytest.raises(prometheus.QueryError) as err:
        prometheus.query(url, "up", [url], deadline=0.5)
    assert time.monotonic() - start < 2.0 and "did not answer within 0.5 s" in str(err.value)


def test_an_oversized_answer_is_refused(serve, monkeypatch):
    monkeypatch.setattr(prometheus, "MAX_BYTES", 64)
    url, _ = serve(200, VECTOR)
    with pytest.raises(prometheus.QueryError) as err:
        prometheus.query(url, "up", [url])
    assert "larger than 64 bytes" in str(err.value)


def test_an_unreachable_server_is_fixed_words():
    with pytest.raises(prometheus.QueryError) as err:
        prometheus.query("http://127.0.0.1:1", "up", ["http://127.0.0.1:1"])
    assert str(err.value) == "Prometheus could not be reached"


def test_the_allow_list_and_namespace_label_come_from_the_environment():
    from finetune_operator.builders.settings import OperatorSettings
    s = OperatorSettings.from_env({"FTO_PROMETHEUS_URL": "http://prom:9090",
                                   "FTO_PROMETHEUS_ALLOWED_URLS": " https://thanos:443/p , ,http://b:1",
                                   "FTO_PROMETHEUS_NAMESPACE_LABEL": ""})
    assert s.prometheus_allowed_urls == ("https://thanos:443/p", "http://b:1")
    assert s.prometheus_namespace_label == "namespace"
    assert OperatorSettings.from_env({}).prometheus_allowed_urls == ()
