"""``SOURCE[=PATH]``: how every command names a labelled data source (``--data``), parsed in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """One labelled source: ``square``, ``hh-rlhf``, ``demo``, a .json/.jsonl file or a hub id, with an optional
    local path."""

    source: str
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        """'square=../shared/data/square' -> DataSpec('square', '../shared/data/square')."""
        source, sep, path = text.partition("=")
        if not source or (sep and not path):
            raise ValueError(f"data spec {text!r} is not SOURCE or SOURCE=PATH")
        return cls(source, path or None)
