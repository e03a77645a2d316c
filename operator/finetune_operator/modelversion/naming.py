"""The served (engine) name of a version, defined once in finetune_api.naming. (The production
record's name is record.record_name: it lives in the operator's namespace.)"""
from __future__ import annotations

from finetune_api.naming import served_name, sha8

__all__ = ["served_name", "sha8"]  # the served-name contract, re-exported
