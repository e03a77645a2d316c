"""The process node's /containerLogs: request parsing and what --tail / --limit-bytes select."""
from __future__ import annotations

import os
import time

import pytest

from devcluster.processnode.containerlogs import LogRequestError, find_log, parse_request, select

LOG = b"one\ntwo\nthree\n"


def test_a_plain_request_names_namespace_pod_and_container():
    assert parse_request("/containerLogs/team-a/trainer-0/main") == (
        "team-a", "trainer-0", "main", {"tail_lines": None, "limit_bytes": None, "follow": False, "previous": False})


def test_kubectl_options_are_read_from_the_query():
    _, _, _, options = parse_request("/containerLogs/ns/p/c?follow=true&tailLines=10&limitBytes=500")
    assert options == {"tail_lines": 10, "limit_bytes": 500, "follow": True, "previous": False}


@pytest.mark.parametrize("path,status,words", [
    ("/stats/summary", 404, "serves only /containerLogs"),
    ("/containerLogs/ns/pod", 404, "serves only /containerLogs"),
    ("/containerLogs/ns/p/c?tailLines=ten", 400, "tailLines must be an integer"),
    ("/containerLogs/ns/p/c?limitBytes=-1", 400, "limitBytes must not be negative"),
])
def test_bad_requests_are_refused_with_a_reason(path, status, words):
    with pytest.raises(LogRequestError) as err:
        parse_request(path)
    assert err.value.status == status and words in str(err.value)


@pytest.mark.parametrize("tail,limit,expected", [
    (None, None, LOG), (2, None, b"two\nthree\n"), (10, None, LOG), (0, None, b""),
    (None, 5, b"one\nt"), (2, 4, b"two\n"),
])
def test_tail_then_limit_select_what_kubectl_asks_for(tail, limit, expected):
    assert select(LOG, tail, limit) == expected


def test_the_newest_pod_of_a_name_is_read_and_missing_ones_are_explained(tmp_path):
    old, new = tmp_path / "ns_web_aaaaaaaa", tmp_path / "ns_web_bbbbbbbb"
    for d, text in ((old, "old"), (new, "new")):
        (d / "logs").mkdir(parents=True)
        (d / "logs" / "main.log").write_text(text)
    past = time.time() - 60
    os.utime(old, (past, past))
    (tmp_path / "ns_web-2_cccccccc" / "logs").mkdir(parents=True)  # a longer name is not a match
    assert find_log(tmp_path, "ns", "web", "main").read_text() == "new"
    with pytest.raises(LogRequestError, match="never run on this node"):
        find_log(tmp_path, "ns", "db", "main")
    with pytest.raises(LogRequestError, match="has not started yet"):
        find_log(tmp_path, "ns", "web", "sidecar")
