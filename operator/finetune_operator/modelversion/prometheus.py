"""Instant queries against Prometheus's HTTP API (/api/v1/query)."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from . import analysis


class QueryError(Exception):
    pass


def query(base_url: str, promql: str, timeout: float = 3.0) -> Optional[float]:
    """The query's value now (None: no data)."""
    if not base_url:
        raise QueryError("no Prometheus URL: set the query's prometheusUrl or the operator's FTO_PROMETHEUS_URL")
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise QueryError(f"{base_url}: HTTP {err.code}: {err.read()[:300]!r}") from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise QueryError(f"{base_url}: {err}") from err
    if doc.get("status") != "success":
        raise QueryError(f"{base_url}: {doc.get('errorType')}: {doc.get('error')}")
    return analysis.value_of(doc)
