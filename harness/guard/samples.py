"""Checks that what a filter receives are real (prompt, response) samples, naming the bad row."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


class FilterInputError(ValueError):
    """A sample given to a filter is malformed; the message names the row."""


def check_samples(samples: Sequence, where: str) -> None:
    """Raise :class:`FilterInputError` for the first sample without a non-empty string prompt and response."""
    for i, sample in enumerate(samples):
        for field in ("prompt", "response"):
            if not hasattr(sample, field):
                raise FilterInputError(f"{where} sample {i}: missing {field} ({type(sample).__name__} has no {field!r})")
            value = getattr(sample, field)
            if not isinstance(value, str):
                raise FilterInputError(f"{where} sample {i}: {field} must be a string, got {type(value).__name__}")
            if not value.strip():
                raise FilterInputError(f"{where} sample {i}: {field} is empty")


def sample_key(sample) -> str:
    """What a filter's verdict depends on, the (prompt, response) text, as a SHA-256 digest."""
    return hashlib.sha256(f"{len(sample.prompt)}:{sample.prompt}{sample.response}".encode()).hexdigest()
