"""Cleaning: HTML is stripped but code, chat markers and placeholders stay; NFC; exact keys."""
import unicodedata

import pytest

from finetune_trainer.safety.cleaning import exact_key, nfc, strip_html


@pytest.mark.parametrize("text,expected", [
    ("<p>Hello <b>world</b></p>", "\nHello world\n"),
    ("Fish &amp; chips<br/>today", "Fish & chips\ntoday"),
    ("<div class=\"x\" onclick='a()'>hi</div>", "\nhi\n"),
    ("before<script>alert(1)</script>after", "beforeafter"),
    ("a<!-- hidden -->b", "ab"),
    ("<STRONG>loud</STRONG>", "loud"),
])
def test_html_is_stripped(text, expected):
    assert strip_html(text) == expected


@pytest.mark.parametrize("text", [
    "if a < b and c > d then",
    "List<String> names = new ArrayList<>();",
    "<|im_start|>user<|im_end|>",
    "contact <EMAIL_ADDRESS> about <CREDIT_CARD>",
    "the end </s> of a sentence",
    "Fish &amp; chips with no tag stays escaped",
])
def test_text_that_is_not_html_is_left_alone(text):
    assert strip_html(text) == text


def test_nfc_composes_and_leaves_normal_text_alone():
    decomposed = "Cafe\u0301"
    assert nfc(decomposed) == "Caf\u00e9" and unicodedata.is_normalized("NFC", nfc(decomposed))
    assert nfc("plain") == "plain"


def test_exact_key_separates_parts():
    assert exact_key(["ab", "c"]) != exact_key(["a", "bc"])
    assert exact_key(["ab", "c"]) == exact_key(["ab", "c"])
    assert exact_key(["\ud800 lone surrogate"]) == exact_key(["\ud800 lone surrogate"])
