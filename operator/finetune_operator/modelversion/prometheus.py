"""Instant queries against Prometheus's HTTP API (/api/v1/query), only at admin-allowed URLs.

A tenant's `prometheusUrl` is a request the operator makes for them, so: the URL must be on the
admin's allow-list (FTO_PROMETHEUS_ALLOWED_URLS plus FTO_PROMETHEUS_URL; admission refuses the
rest first, this re-checks before dialling); the operator builds the query URL itself from
scheme://host[:port][/base] (no userinfo, query, fragment or odd path); redirects are not followed;
the whole call has a deadline and a size cap; and what the server answers never reaches an Event,
a condition or a log: errors are fixed words with the HTTP status at most.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse
from typing import Iterable, Optional

from . import analysis

MAX_BYTES = 1 << 20          # an instant query for one number is a few hundred bytes
DEADLINE = 3.0               # seconds, the whole call
_BASE_PATH = re.compile(r"^(/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)*/?$")   # plain segments, no . or ..
_HOST = re.compile(r"^([0-9a-f:.]+|[a-z0-9.-]+)$")   # urlsplit's hostname: lower case, no brackets
# Prometheus's own errorType values; anything else a server sends is not repeated.
_ERROR_TYPES = frozenset({"bad_data", "timeout", "canceled", "execution", "internal", "unavailable", "not_found"})


class QueryError(Exception):
    """message: safe to show the tenant (never the server's words)."""


def endpoint(url: str) -> Optional[str]:
    """The canonical scheme://host[:port][/base] of a Prometheus base URL, or None when it is not one
    (userinfo, query, fragment, percent-escapes, a path with anything but plain segments, a bad port)."""
    url = (url or "").strip()
    try:
        parts = urllib.parse.urlsplit(url)
        port, host = parts.port, parts.hostname or ""
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or "@" in parts.netloc or any(c in url for c in "#?%\\") \
            or not _HOST.match(host) or not _BASE_PATH.match(parts.path):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{shown}{f':{port}' if port is not None else ''}{parts.path.rstrip('/')}"


def allowed(url: str, allow_list: Iterable[str]) -> Optional[str]:
    """The canonical URL when it is on the allow-list (entries canonicalised the same way), else None."""
    wanted = endpoint(url)
    return wanted if wanted and wanted in {endpoint(a) for a in allow_list if a} else None


def query(base_url: str, promql: str, allow_list: Iterable[str], deadline: float = DEADLINE) -> Optional[float]:
    """The query's value now (None: no data). QueryError with a fixed message on any failure."""
    if not base_url:
        raise QueryError("no Prometheus URL: set the query's prometheusUrl or the operator's FTO_PROMETHEUS_URL")
    base = allowed(base_url, allow_list)
    if base is None:
        raise QueryError("the Prometheus URL is not on the operator's allow-list (ask the platform team)")
    status, body = _get(base, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}), deadline)
    if status != 200:
        raise QueryError(f"Prometheus answered HTTP {status}")
    try:
        doc = json.loads(body)
    except ValueError:
        raise QueryError("Prometheus's answer was not a query result") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        kind = doc.get("errorType") if isinstance(doc, dict) else None
        raise QueryError("Prometheus refused the query" + (f" ({kind})" if kind in _ERROR_TYPES else ""))
    try:
        return analysis.value_of(doc)
    except (AttributeError, IndexError, KeyError, TypeError):
        raise QueryError("Prometheus's answer was not a query result") from None


def _get(base: str, path_and_query: str, deadline: float) -> tuple:
    """(HTTP status, body up to MAX_BYTES). A timer shuts the socket at the deadline, so a server that
    drips its headers or body cannot hold the worker longer than that. No redirects, no proxies."""
    parts = urllib.parse.urlsplit(base)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=deadline)
    held: list = []   # the socket, kept here: the connection hands it to the response and forgets it
    timer = threading.Timer(deadline, _shut, (held,))
    timer.daemon = True
    start = time.monotonic()
    timer.start()
    try:
        conn.connect()
        held.append(conn.sock)
        conn.request("GET", parts.path + path_and_query, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(MAX_BYTES + 1)
    except (TimeoutError, socket.timeout):
        raise QueryError(f"Prometheus did not answer within {deadline:g} s") from None
    except (OSError, http.client.HTTPException):
        if time.monotonic() - start >= deadline:
            raise QueryError(f"Prometheus did not answer within {deadline:g} s") from None
        raise QueryError("Prometheus could not be reached") from None
    finally:
        timer.cancel()
        conn.close()
    if time.monotonic() - start >= deadline:
        raise QueryError(f"Prometheus did not answer within {deadline:g} s")
    if len(body) > MAX_BYTES:
        raise QueryError(f"Prometheus's answer was larger than {MAX_BYTES} bytes")
    return resp.status, body


def _shut(held: list) -> None:
    for sock in held:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
