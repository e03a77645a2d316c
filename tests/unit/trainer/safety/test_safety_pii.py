"""PII: Presidio pattern recognizers find planted values, leave look-alikes, redact to placeholders, offline."""
import subprocess
import sys

import pytest

from finetune_trainer.safety.pii import DEFAULT_ENTITIES, RECOGNIZERS, PiiScanner
from finetune_trainer.safety.spans import Span, redact


@pytest.fixture(scope="module")
def scanner():
    return PiiScanner(entities=tuple(RECOGNIZERS))


PLANTED = [
    ("EMAIL_ADDRESS", "write to jane.roe@example.org today", "jane.roe@example.org"),
    ("PHONE_NUMBER", "call me on +1 415-555-0132 after six", "+1 415-555-0132"),
    ("PHONE_NUMBER", "office (212) 555-0199, ask for Sam", "(212) 555-0199"),
    ("PHONE_NUMBER", "UK line +44 20 7946 0958 is open", "+44 20 7946 0958"),
    ("CREDIT_CARD", "card 4111 1111 1111 1111 expires soon", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "visa 4012888888881881 was charged", "4012888888881881"),
    ("IBAN_CODE", "IBAN DE89370400440532013000 for the refund", "DE89370400440532013000"),
    ("IBAN_CODE", "pay GB82 WEST 1234 5698 7654 32 please", "GB82 WEST 1234 5698 7654 32"),
    ("IP_ADDRESS", "the server 192.168.10.1 is down", "192.168.10.1"),
    ("IP_ADDRESS", "v6 host 2001:db8::ff00:42:8329 answers", "2001:db8::ff00:42:8329"),
    ("US_SSN", "my ssn is 536-22-1234 ok", "536-22-1234"),
    ("UK_NINO", "NI number AB123456C on file", "AB123456C"),
]


@pytest.mark.parametrize("entity,text,value", PLANTED, ids=[f"{e}:{v}" for e, _, v in PLANTED])
def test_a_planted_value_is_found_and_redacted(scanner, entity, text, value):
    spans = [s for s in scanner.scan(text) if s.kind == entity]
    assert [text[s.start:s.end] for s in spans] == [value]
    redacted = redact(text, scanner.scan(text))
    assert value not in redacted and f"<{entity}>" in redacted


LOOK_ALIKES = [
    ("a card number failing Luhn", "card 4111 1111 1111 1112 expires soon", "CREDIT_CARD"),
    ("an IBAN with a wrong check digit", "IBAN DE00370400440532013000 for the refund", "IBAN_CODE"),
    ("an address with no domain", "write to jane.roe@localhost today", "EMAIL_ADDRESS"),
    ("a dotted version number", "upgrade to 10.2.300.4000 now", "IP_ADDRESS"),
    ("a short order number", "order 12345 arrived damaged", "PHONE_NUMBER"),
    ("an SSN with area 000", "id 000-22-1234 is not an ssn", "US_SSN"),
]


@pytest.mark.parametrize("why,text,entity", LOOK_ALIKES, ids=[w for w, _, _ in LOOK_ALIKES])
def test_a_look_alike_is_not_reported(scanner, why, text, entity):
    assert [s for s in scanner.scan(text) if s.kind == entity] == []


def test_ordinary_support_text_has_no_pii():
    text = ("Hello, my order arrived on March 3rd with a broken handle. I would like a replacement "
            "rather than a refund. The box said model X200, batch 7. Thanks for your help!")
    assert PiiScanner().scan(text) == []


def test_the_default_entities_are_the_common_ones_and_unknown_ones_are_refused():
    assert set(DEFAULT_ENTITIES) <= set(RECOGNIZERS)
    assert PiiScanner().entities == DEFAULT_ENTITIES
    with pytest.raises(ValueError, match="NOT_A_TYPE"):
        PiiScanner(entities=("NOT_A_TYPE",))


def test_min_score_filters_weak_matches():
    text = "call me on +1 415-555-0132 after six"
    assert PiiScanner(entities=("PHONE_NUMBER",), min_score=0.4).scan(text)
    assert PiiScanner(entities=("PHONE_NUMBER",), min_score=0.9).scan(text) == []


@pytest.mark.parametrize("spans,expected", [
    ([], "abc def"),
    ([Span(0, 3, "A")], "<A> def"),
    ([Span(4, 7, "B"), Span(0, 3, "A")], "<A> <B>"),
    ([Span(0, 5, "A"), Span(2, 7, "B")], "<A>"),  # overlapping spans merge into one placeholder
    ([Span(0, 7, "A"), Span(2, 4, "B")], "<A>"),  # a span inside another
])
def test_redact_replaces_spans_with_placeholders(spans, expected):
    assert redact("abc def", spans) == expected


def test_scanning_never_touches_the_network(no_network):
    scanner = PiiScanner(entities=tuple(RECOGNIZERS))
    for _, text, _ in PLANTED:
        scanner.scan(text)
    assert no_network == []


def test_a_fresh_process_builds_and_scans_with_sockets_blocked(tmp_path):
    """tldextract's default extractor would fetch the Public Suffix List on first use: in a process
    where nothing was loaded before and every socket call raises, the email check still works."""
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('network used: %r' % (a[1:],))\n"
        "socket.socket.connect = refuse\nsocket.getaddrinfo = refuse\nsocket.create_connection = refuse\n"
        "from finetune_trainer.safety.pii import PiiScanner, RECOGNIZERS\n"
        "s = PiiScanner(entities=tuple(RECOGNIZERS))\n"
        "print(sorted({x.kind for x in s.scan('mail jane.roe@example.co.uk or 192.168.1.1')}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['EMAIL_ADDRESS', 'IP_ADDRESS']"


@pytest.mark.parametrize("why,text", [
    ("20 KB of 'a.' before an '@' (Presidio's email pattern alone takes about a minute)", "a." * 10000 + "@x"),
    ("7 000 '@' in dot runs", "a.@" * 7000),
    ("20 KB of digits", "1" * 20000),
    ("20 KB of spaced digits (every phone window)", "1 " * 10000),
])
def test_pathological_text_is_scanned_in_bounded_time(scanner, why, text):
    import time
    started = time.process_time()
    scanner.scan(text)
    assert time.process_time() - started < 5, why
