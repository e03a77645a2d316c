"""Moderation hook: a loopback OpenAI-compatible server; answers, deadlines, bounded bodies."""
import http.server
import json
import threading
import time

import pytest

from finetune_trainer.safety.moderation import MAX_BODY, ModerationUnavailable, Moderator


class Handler(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    seen: list = []

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up at its deadline, as it should

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, body))
        if self.mode == "slow":
            time.sleep(3)
        if self.mode == "drip":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(60):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)
            return
        flagged = "kill" in body["input"]
        doc = {"results": [{"flagged": flagged, "categories": {"violence": flagged, "hate": False,
                                                             "bad name<script>": flagged}}]}
        payload = b" " * (MAX_BODY + 10) + json.dumps(doc).encode() if self.mode == "huge" else json.dumps(doc).encode()
        self.send_response(500 if self.mode == "error" else 200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.mode, Handler.seen = "ok", []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_flagged_text_names_its_sanitised_categories(server):
    assert Moderator(server).check("I will kill the process") == (True, ["violence"])
    assert Moderator(server).check("hello") == (False, [])
    assert Handler.seen[0] == ("/v1/moderations", {"input": "I will kill the process"})


def test_a_url_that_already_names_the_path_is_used_as_is(server):
    Moderator(server + "/v1/moderations").check("hello")
    assert Handler.seen[-1][0] == "/v1/moderations"


@pytest.mark.parametrize("mode,timeout", [("slow", 0.5), ("drip", 0.5), ("huge", 5), ("error", 5)])
def test_a_bad_endpoint_ends_within_the_deadline_with_no_body_in_the_message(server, mode, timeout):
    Handler.mode = mode
    started = time.monotonic()
    with pytest.raises(ModerationUnavailable) as err:
        Moderator(server, timeout_seconds=timeout).check("hello")
    assert time.monotonic() - started < timeout + 1.0
    assert "violence" not in str(err.value) and "results" not in str(err.value)


def test_a_closed_port_is_unavailable():
    with pytest.raises(ModerationUnavailable):
        Moderator("http://127.0.0.1:9", timeout_seconds=1).check("hello")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "127.0.0.1:8080", "http:///v1"])
def test_a_url_that_is_not_http_is_refused(url):
    with pytest.raises(ValueError):
        Moderator(url)
