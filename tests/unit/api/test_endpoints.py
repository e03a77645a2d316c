"""finetune_api.endpoints: the metadata-endpoint corpus, refused or accepted as the admission policy does."""
from __future__ import annotations

from pathlib import Path

import pytest

from finetune_api import endpoints

CORPUS = Path(__file__).resolve().parents[2] / "e2e" / "metadata_corpus" / "endpoints.txt"


def corpus(verdict: str) -> list[str]:
    lines = [line.split(" ", 1) for line in CORPUS.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert all(v in ("refuse", "accept") for v, _ in lines), "each corpus line starts with refuse or accept"
    return [url for v, url in lines if v == verdict]


@pytest.mark.parametrize("url", corpus("refuse"))
def test_every_corpus_form_of_a_metadata_endpoint_is_refused(url):
    assert endpoints.refusal(url) is not None, url
    with pytest.raises(endpoints.UnsafeEndpoint):
        endpoints.require_safe(url)


@pytest.mark.parametrize("url", corpus("accept"))
def test_ordinary_endpoints_in_the_corpus_are_accepted(url):
    assert endpoints.refusal(url) is None, endpoints.refusal(url)
    endpoints.require_safe(url)


# Parsed only: endpoints.refusal never opens a connection.
@pytest.mark.parametrize("url, reason", [
    ("http://good@169.254.169.254", "user info"),
    ("http://169。254。169。254", "non-ASCII"),
    ("http://[::ffff:a9fe:a9fe]", "IPv4-mapped"),
    ("http://[fe80::1%25eth0]", "zone"),
    ("http://0251.0376.0251.0376", "non-standard form"),
    ("http://[0:0:0:0:0:0:0:1]", "canonical form; write ::1"),
    ("http://metadata.", "trailing dot"),
    ("http://metadata", "cloud metadata service"),
    ("http://169.254.169.254", "link-local or cloud metadata address"),
    ("169.254.169.254", "not a scheme://host URL"),
])
def test_the_refusal_names_the_form_in_plain_words(url, reason):
    assert reason in endpoints.refusal(url)


def test_the_refusal_never_echoes_the_url():
    assert "a9fe" not in endpoints.refusal("http://[::ffff:a9fe:a9fe]")


@pytest.mark.parametrize("url", [None, ""])
def test_an_unset_endpoint_means_the_provider_default_and_passes(url):
    endpoints.require_safe(url)


def test_the_error_names_what_was_refused():
    with pytest.raises(endpoints.UnsafeEndpoint, match="spec.credentials.endpoint is refused"):
        endpoints.require_safe("http://2852039166", "spec.credentials.endpoint")
