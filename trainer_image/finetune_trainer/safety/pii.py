"""PII: Presidio's pattern recognizers only (no NLP model, nothing downloaded at run time).

Presidio's default AnalyzerEngine loads a spaCy NER model (a download); here each pattern
recognizer is called directly with `nlp_artifacts=None`, which is what the engine does for
pattern recognizers anyway, minus the context-word score boost (which needs the NLP model).
The email recognizer checks the domain with tldextract, whose default extractor fetches the
Public Suffix List over the network: it is replaced by one that reads only the snapshot bundled
with tldextract. Each recognizer has a cheap trigger regex, a necessary condition for any of its
patterns to match (e.g. no '@' -> no email), so most rows skip most recognizers.
Phone numbers (the `phonenumbers` matcher, ~2 ms per KB) run only on candidate windows of digits
and separators, and emails only on the 64 + 255 characters around each '@', not on the whole text.
"""
from __future__ import annotations

import re
import sys

import tldextract

from .spans import Span


def _import_recognizers():
    """Presidio's package import reaches `from transformers import pipeline` (for its transformers NLP
    engine, never used here), which loads transformers' pipelines: ~200 MB RSS and seconds of CPU in
    the validate pod. Blocking that one submodule while Presidio imports makes its optional import
    fail as if transformers were absent; the entry is removed again, so later imports work."""
    blocked = "transformers.pipelines" not in sys.modules
    if blocked:
        sys.modules["transformers.pipelines"] = None
    try:
        from presidio_analyzer import predefined_recognizers
    finally:
        if blocked and sys.modules.get("transformers.pipelines", 0) is None:
            del sys.modules["transformers.pipelines"]
    return predefined_recognizers


pr = _import_recognizers()

# entity -> (recognizer class name, trigger): the trigger is read off the recognizer's patterns (which
# Presidio matches case-insensitively) as a substring every match contains, so skipping the
# recognizer when the trigger is absent never misses a match.
RECOGNIZERS = {
    "EMAIL_ADDRESS": ("EmailRecognizer", r"@"),
    "PHONE_NUMBER": ("PhoneRecognizer", None),  # windows, see _PHONE_WINDOW
    "CREDIT_CARD": ("CreditCardRecognizer", r"\d{4}[- ]?\d{3}"),
    "IBAN_CODE": ("IbanRecognizer", r"[A-Za-z]{2}\d{2}"),
    "IP_ADDRESS": ("IpRecognizer", r"\d\.\d{1,3}\.\d|::|[0-9A-Fa-f]:[0-9A-Fa-f]"),
    "US_SSN": ("UsSsnRecognizer", r"\d{3}[- .]?\d{2}[- .]?\d{4}"),
    "US_ITIN": ("UsItinRecognizer", r"9\d{2}"),
    "UK_NINO": ("UkNinoRecognizer", r"\d{2} ?\d{2} ?\d{2}"),
    "UK_NHS": ("NhsRecognizer", r"\d{3}[- ]?\d{3}[- ]?\d{4}"),
    "CRYPTO": ("CryptoRecognizer", r"[13][A-Za-z0-9]{25}"),
    "ES_NIF": ("EsNifRecognizer", r"\d{7}-?[A-Za-z]"),
    "IT_FISCAL_CODE": ("ItFiscalCodeRecognizer", r"[A-Za-z]{6}[0-9LMNP-Vlmnp-v]{2}"),
    "PL_PESEL": ("PlPeselRecognizer", r"\d{11}"),
    "FI_PERSONAL_IDENTITY_CODE": ("FiPersonalIdentityCodeRecognizer", r"\d{6}[-+A-Za-z]\d{3}"),
    "IN_AADHAAR": ("InAadhaarRecognizer", r"\d{4}[- :]?\d{4}"),
    "SG_NRIC_FIN": ("SgFinRecognizer", r"[A-Za-z]\d{7}[A-Za-z]"),
    "AU_TFN": ("AuTfnRecognizer", r"\d{3}\s?\d{3}\s?\d{3}"),
}
DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")
# digits with the separators phone numbers are written with; windows with < 7 digits are skipped
_PHONE_WINDOW = re.compile(r"[+(]?\d[\d \t().\-/]{5,24}\d")
_NOT_DIGIT = re.compile(r"\D")
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class _OfflineEmailRecognizer(pr.EmailRecognizer):
    def validate_result(self, pattern_text: str):
        return _OFFLINE_TLD(pattern_text).fqdn != ""


def _build(entity: str):
    name = RECOGNIZERS[entity][0]
    if name == "EmailRecognizer":
        return _OfflineEmailRecognizer()
    return getattr(pr, name)()


class PiiScanner:
    """`scan(text)` -> the PII spans with a score >= min_score, for the configured entity types."""

    def __init__(self, entities=(), min_score: float = 0.4):
        unknown = sorted(set(entities) - set(RECOGNIZERS))
        if unknown:
            raise ValueError(f"unsupported PII entity types {unknown}; supported: {sorted(RECOGNIZERS)}")
        self.entities = tuple(entities) or DEFAULT_ENTITIES
        self.min_score = min_score
        self._checks = []
        for entity in self.entities:
            trigger = RECOGNIZERS[entity][1]
            self._checks.append((entity, _build(entity), re.compile(trigger) if trigger else None))

    def scan(self, text: str) -> list:
        spans = []
        for entity, recognizer, trigger in self._checks:
            if entity == "PHONE_NUMBER":
                spans += self._phones(recognizer, text)
            elif entity == "EMAIL_ADDRESS":
                spans += self._emails(recognizer, text)
            elif trigger is None or trigger.search(text):
                spans += self._spans(recognizer, entity, text, 0)
        return spans

    def _spans(self, recognizer, entity: str, text: str, offset: int) -> list:
        found = recognizer.analyze(text, [entity], None)
        return [Span(r.start + offset, r.end + offset, r.entity_type) for r in found if r.score >= self.min_score]

    def _emails(self, recognizer, text: str) -> list:
        """Presidio's email pattern backtracks quadratically over long runs of `a.a.a.` before an '@'
        (20 KB: a minute); an address has at most 64 characters before its '@' and 255 after
        (RFC 5321), so the pattern runs on that window around each '@' only."""
        spans, at = set(), text.find("@")
        while at >= 0:
            start = max(0, at - 65)
            spans.update(self._spans(recognizer, "EMAIL_ADDRESS", text[start:at + 257], start))
            at = text.find("@", at + 1)
        return sorted(spans, key=lambda sp: (sp.start, sp.end))

    def _phones(self, recognizer, text: str) -> list:
        spans = []
        for window in _PHONE_WINDOW.finditer(text):
            if len(_NOT_DIGIT.sub("", window.group())) < 7:
                continue
            start = max(0, window.start() - 1)
            spans += self._spans(recognizer, "PHONE_NUMBER", text[start:window.end() + 1], start)
        return spans
