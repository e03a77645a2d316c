"""Typed outcomes of a trainer run: TrainerFailure, and writing the termination message.

The exit codes, their reasons, which are retryable and the JSON document itself are the
contract with the operator, defined once in finetune_api.termination (the table is there).
"""
from __future__ import annotations

from pathlib import Path

from finetune_api import termination
from finetune_api.termination import REASONS, RETRYABLE, ExitCode

__all__ = ["REASONS", "RETRYABLE", "ExitCode", "TrainerFailure", "termination_message", "write_termination_message"]


class TrainerFailure(Exception):
    """A failure with a typed exit code; the message is for the user (it ends up in the job's status)."""

    def __init__(self, code: ExitCode, message: str, **details):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    @property
    def reason(self) -> str:
        return REASONS[self.code]


def termination_message(code: ExitCode, message: str, **fields) -> str:
    """Compact JSON that fits Kubernetes' 4 KiB termination-message limit (the message is cut first)."""
    return termination.encode(code, message, **fields)


def write_termination_message(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError:
        pass  # outside a pod (standalone run) there may be no such file to write
