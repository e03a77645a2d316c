"""What validating a dataset found: counts and the first MAX_REPORTED problems with their line numbers."""
from __future__ import annotations

import dataclasses

MAX_REPORTED = 20


@dataclasses.dataclass
class DatasetReport:
    rows: int = 0
    validation_rows: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    rows_over_max_seq_length: int = 0
    duplicate_rows: int = 0
    empty_completions: int = 0
    skipped_rows: int = 0
    # The validate pass (data.validate): usable regression rows, and rows the data-safety gate
    # (Contract A) dropped or changed, over all objects.
    regression_rows: int = 0
    dropped_rows: int = 0
    changed_rows: int = 0
    error_count: int = 0
    errors: list = dataclasses.field(default_factory=list)
    source_etag: str = ""
    # One finetune_api.datasets source document per object read to its end ({role, uri, sha256, bytes, versionId?}).
    sources: list = dataclasses.field(default_factory=list)

    def add_error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(message)

    def summary(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "errors"}
