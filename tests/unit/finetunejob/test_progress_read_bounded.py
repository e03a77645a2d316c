"""The trainer's /progress is read under a total deadline and a size cap: the answering pod is in
the tenant's namespace, and a drip-fed or endless answer must not hold a reconcile worker."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from finetune_operator.finetunejob import observe


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "ok"

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        if self.mode == "ok":
            self.wfile.write(json.dumps({"step": 3, "totalSteps": 10}).encode())
        elif self.mode == "huge":
            self.wfile.write(b'{"pad": "' + b"x" * (observe.PROGRESS_MAX_BYTES + 10) + b'"}')
        else:  # drip: one byte every 0.5 s, never a complete document
            for _ in range(40):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.5)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()


@pytest.mark.parametrize("mode, expected", [("ok", {"step": 3, "totalSteps": 10}), ("huge", None), ("drip", None)])
def test_progress_is_read_within_its_deadline_and_size_cap(server, mode, expected):
    _Handler.mode = mode
    started = time.monotonic()
    assert observe._progress("127.0.0.1", server.server_address[1]) == expected
    assert time.monotonic() - started < observe.PROGRESS_SECONDS + 1.5
