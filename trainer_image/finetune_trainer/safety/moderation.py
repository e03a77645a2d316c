"""An optional moderation hook: an in-cluster OpenAI-compatible `POST /v1/moderations {input}`.

The URL is never the tenant's: the operator resolves the tenant's endpoint NAME against the
admin's list and passes the URL in the trainer config. Each call has a total deadline (connect,
send and read together) and reads at most MAX_BODY bytes; the answer is reduced to `flagged` and
the flagged category names (sanitised and capped); the body itself is never logged or reported.
An endpoint that does not answer in time or answers garbage raises ModerationUnavailable.
"""
from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse

MAX_BODY = 64 * 1024
MAX_CATEGORIES = 8
_CATEGORY = re.compile(r"^[A-Za-z0-9/_-]{1,40}$")


class ModerationUnavailable(Exception):
    """The endpoint did not give a usable answer within the deadline (no body in the message)."""


class Moderator:
    def __init__(self, url: str, timeout_seconds: float = 5.0, model: str = ""):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the moderation endpoint must be an http(s) URL")
        path = parts.path.rstrip("/")
        self._path = path if path.endswith("/v1/moderations") else path + "/v1/moderations"
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self.timeout, self.model = float(timeout_seconds), model

    def check(self, text: str) -> tuple:
        """(flagged, [category names]) for one text."""
        body = json.dumps({"input": text, **({"model": self.model} if self.model else {})}).encode()
        answer = self._post(body)
        try:
            result = json.loads(answer)["results"][0]
            flagged = bool(result["flagged"])
            cats = result.get("categories") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModerationUnavailable("the moderation endpoint's answer is not a moderation result") from None
        names = sorted(k for k, v in cats.items() if v is True and isinstance(k, str) and _CATEGORY.match(k))
        return flagged, names[:MAX_CATEGORIES]

    def _post(self, body: bytes) -> bytes:
        deadline = time.monotonic() + self.timeout
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout)
        try:
            conn.request("POST", self._path, body, {"Content-Type": "application/json"})
            sock = conn.sock
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            resp = conn.getresponse()
            if resp.status != 200:
                raise ModerationUnavailable(f"the moderation endpoint answered HTTP {resp.status}")
            return self._read(resp, sock, deadline)
        except (OSError, http.client.HTTPException):
            raise ModerationUnavailable(f"the moderation endpoint did not answer within {self.timeout:g} s") from None
        finally:
            conn.close()

    @staticmethod
    def _read(resp, sock, deadline: float) -> bytes:
        chunks, size = [], 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModerationUnavailable("the moderation endpoint did not answer within its deadline")
            sock.settimeout(remaining)  # a slow drip of bytes cannot stretch the call past the deadline
            chunk = resp.read1(8192)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_BODY:
                raise ModerationUnavailable(f"the moderation endpoint's answer is over {MAX_BODY} bytes")
            chunks.append(chunk)
