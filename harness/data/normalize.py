"""Prompt text normalised for overlap checks: two prompts are "the same" when these forms are equal."""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata

_SPACE = re.compile(r"\s+")
_EDGE = string.punctuation + string.whitespace


def normalize_prompt(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed, punctuation and spaces stripped from both ends."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip(_EDGE)


def prompt_digest(text: str) -> str:
    """sha256 hex of :func:`normalize_prompt` (what guards store instead of their training prompts)."""
    return hashlib.sha256(normalize_prompt(text).encode("utf-8")).hexdigest()
