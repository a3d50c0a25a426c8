"""Validation of raw rows into :class:`ChatSample`, naming the source and row on error."""

from __future__ import annotations

from typing import Any

from harness import InputError
from harness.types import ChatSample


# The longest prompt or response accepted, in characters (docs/reliability.md). Far above any training or eval
# sample (they are truncated to the model's context of a few thousand tokens anyway), far below what blows up
# memory: one 50 MB field cost 10.4 GB to read and tokenize.
MAX_FIELD_CHARS = 1_000_000


class DataError(InputError):
    """A dataset row is malformed; the message names the source and the row."""


def to_sample(row: Any, source: str, index: int, category: str | None = None) -> ChatSample:
    """A validated sample from a mapping with ``prompt``, ``response`` and optional ``is_harmful``/``category``."""
    where = f"{source} row {index}"
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a mapping, got {type(row).__name__}")
    for key in ("prompt", "response"):
        if key not in row:
            raise DataError(f"{where}: missing field {key!r} (fields: {', '.join(map(str, row)) or 'none'})")
        if not isinstance(row[key], str):
            raise DataError(f"{where}: field {key!r} must be a string, got {type(row[key]).__name__}")
        if len(row[key]) > MAX_FIELD_CHARS:
            raise DataError(f"{where}: field {key!r} has {len(row[key]):,} characters; the limit is "
                            f"{MAX_FIELD_CHARS:,} (harness.data.samples.MAX_FIELD_CHARS)")
        if not row[key].strip():
            raise DataError(f"{where}: field {key!r} is empty")
        check_utf8_text(row[key], f"{where}: field {key!r}")
    harmful = row.get("is_harmful")
    if harmful is not None and not isinstance(harmful, bool) and not (type(harmful) is int and harmful in (0, 1)):
        raise DataError(f"{where}: field 'is_harmful' must be a boolean (true/false, or 0/1), got {harmful!r}")
    cat = row.get("category", category)
    if cat is not None and not isinstance(cat, str):
        raise DataError(f"{where}: field 'category' must be a string, got {type(cat).__name__}")
    return ChatSample(
        prompt=row["prompt"],
        response=row["response"],
        is_harmful=None if harmful is None else bool(harmful),
        category=cat,
        source=source,
    )


def check_utf8_text(text: str, where: str) -> None:
    """DataError unless ``text`` encodes as UTF-8: a lone surrogate (JSON ``"\\ud800"``) would otherwise pass
    validation and fail in the tokenizer in round 1, naming no row."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where} is not valid Unicode text: {exc.reason} at character {exc.start} "
                        f"({text[exc.start:exc.end]!r}); fix or drop the row") from None
