"""The "did you mean" of every name the harness looks up: plugins and evals, presets, config keys, commands."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'scaffold'?)"`` for the choice closest to ``name``; ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
