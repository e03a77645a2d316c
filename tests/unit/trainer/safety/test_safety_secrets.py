"""Secrets: detect-secrets' plugins on in-memory text find each kind, the whole token is redacted,
ordinary text (long words, ids, hashes of prose) does not trip the high-entropy check."""
import pytest

from finetune_trainer.safety.secrets import TRIGGERS, SecretScanner, kind_of
from finetune_trainer.safety.spans import redact

# Built from parts so that no scanner flags this test file itself as holding live credentials.
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" +
       ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\nb3BlbnNzaC1rZXk\n-----END RSA PRIVATE KEY-----"

PLANTED = [
    ("AWS_ACCESS_KEY", f"use {AWS_KEY} for the bucket", AWS_KEY),
    ("HIGH_ENTROPY_STRING", f"the secret is {AWS_SECRET} keep it", AWS_SECRET),
    ("GITHUB_TOKEN", f"token {GITHUB} in CI", GITHUB),
    ("SLACK_TOKEN", f"bot {SLACK} posts", SLACK),
    ("STRIPE_ACCESS_KEY", f"charge with {STRIPE} now", STRIPE),
    ("JSON_WEB_TOKEN", f"Authorization: Bearer {JWT}", JWT),
    ("BASIC_AUTH_CREDENTIALS", "db at https://admin:" + "s3cr3tpw@db.example.com/app ok", "https://admin:s3cr3tpw@db.example.com/app"),
    ("PRIVATE_KEY", f"key:\n{PEM}\nthat was it", PEM),
    ("SECRET_KEYWORD", "config: password = '" + "hunter22xyz'", "hunter22xyz"),
]


@pytest.fixture(scope="module")
def scanner():
    return SecretScanner()


@pytest.mark.parametrize("kind,text,value", PLANTED, ids=[k for k, _, _ in PLANTED])
def test_each_secret_kind_is_found_and_its_whole_value_redacted(scanner, kind, text, value):
    spans = scanner.scan(text)
    assert kind in {s.kind for s in spans}
    redacted = redact(text, spans)
    assert value not in redacted and f"<{kind}>" in redacted
    for part in (value[:12], value[-12:]):  # no fragment of the value survives (e.g. GitHub's 'ghp' group)
        assert part not in redacted


ORDINARY = [
    "Hello, my order arrived on March 3rd with a broken handle. I would like a replacement.",
    "I forgot my password and the reset key never arrived; the token expired yesterday.",
    "Internationalization and counterrevolutionaries are long words, Donaudampfschifffahrt too.",
    "See https://docs.example.com/guides/getting-started/installation-and-configuration for steps.",
    "Order id 2024-11-30-000123 and tracking number 1Z999AA10123456784 were sent by mail.",
    "The passphrase for the wifi is written on the router, ask the front desk.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_not_a_secret(scanner, text):
    assert scanner.scan(text) == []


def test_a_high_entropy_token_is_not_counted_twice_when_a_plugin_named_it(scanner):
    assert [s.kind for s in scanner.scan(f"token {GITHUB} in CI")] == ["GITHUB_TOKEN"]


def test_the_triggers_never_skip_a_plugin_that_would_match(scanner):
    """Every planted value is also found when the text is lowercased around it (the literal
    triggers are compared with the lowercased text)."""
    for kind, text, value in PLANTED:
        assert kind in {s.kind for s in scanner.scan("PREFIX " + text.upper().replace(value.upper(), value))}


@pytest.mark.parametrize("secret_type,kind", [("AWS Access Key", "AWS_ACCESS_KEY"), ("JSON Web Token", "JSON_WEB_TOKEN"),
                                              ("Hex High Entropy String", "HEX_HIGH_ENTROPY_STRING")])
def test_kind_of_names_a_type_as_a_placeholder(secret_type, kind):
    assert kind_of(secret_type) == kind


def test_every_trigger_names_a_detect_secrets_plugin():
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    assert set(TRIGGERS) <= set(get_mapping_from_secret_type_to_class())


def test_scanning_never_touches_the_network(no_network):
    scanner = SecretScanner()
    for _, text, _ in PLANTED:
        scanner.scan(text)
    assert no_network == []
