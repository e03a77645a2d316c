"""The CRD documents exactly the condition types the operator sets (it once listed Failed and
Cancelled, which were never set: the summary Succeeded condition carries both)."""
from __future__ import annotations

import re

from finetune_api import finetunejob_crd

from finetune_operator import status as st
from finetune_operator.runtime.controller import RECONCILE_ERROR


def test_the_crd_documents_every_condition_type_the_operator_sets():
    doc = finetunejob_crd.status()["properties"]["conditions"]["description"]
    for ctype in (st.VALIDATED, st.RUNNING, st.SUSPENDED, st.SUCCEEDED, RECONCILE_ERROR):
        assert re.search(rf"\b{ctype}( \(|,)", doc), ctype


def test_the_crd_lists_no_failed_or_cancelled_condition_type():
    doc = finetunejob_crd.status()["properties"]["conditions"]["description"]
    assert not re.search(r"(?<!reason )\b(Failed|Cancelled)( \(|,|\.)", doc), doc
