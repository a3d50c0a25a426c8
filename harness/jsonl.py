"""The one JSON Lines reader of the harness: gzip by suffix, blank lines skipped, 1-based row numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Path | str, error_cls: type[Exception]) -> list[tuple[int, dict[str, Any]]]:
    """``(row, object)`` for each non-blank line of ``path``; ``row`` is the 1-based line number.

    A ``.gz`` file is decompressed. A line that is not a JSON object raises ``error_cls`` with a
    message naming the file and the row (``data.jsonl row 3: not valid JSON (...)``).
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error_cls(f"{path} row {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise error_cls(f"{path} row {number}: expected a JSON object, got {type(row).__name__}")
            rows.append((number, row))
    return rows
