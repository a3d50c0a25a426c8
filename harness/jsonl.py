"""The one JSON Lines reader of the harness: gzip by suffix, blank lines skipped, 1-based row numbers."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

# A line longer than this is refused before it is parsed (docs/reliability.md): no dataset row of the harness
# comes near it, and a single huge row can cost gigabytes once parsed and tokenized.
MAX_ROW_BYTES = 4 * 1024 * 1024


def parse_json(text: str | bytes, where: str, error_cls: type[Exception]) -> Any:
    """``json.loads`` whose failures (bad JSON, nesting too deep for the parser) raise ``error_cls`` naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error_cls(f"{where}: not valid JSON ({exc.msg})") from exc
    except RecursionError:
        raise error_cls(f"{where}: JSON nested too deeply to read") from None


def decode_utf8(data: bytes, where: str, error_cls: type[Exception], lines: bool = False) -> str:
    """``data`` as UTF-8 text; otherwise ``error_cls`` naming ``where``, the byte offset and (``lines``) the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = data[: exc.start].count(b"\n") + 1
        line = f"line {number}, " if lines else ""
        raise error_cls(f"{where}: not UTF-8 text ({line}byte {exc.start}: {exc.reason})") from None


def read_jsonl(path: Path | str, error_cls: type[Exception]) -> list[tuple[int, dict[str, Any]]]:
    """``(row, object)`` for each non-blank line of ``path``; ``row`` is the 1-based line number.

    A ``.gz`` file is decompressed. A line that is not UTF-8, not a JSON object, nested too deeply, or longer than
    :data:`MAX_ROW_BYTES` raises ``error_cls`` with a message naming the file and the row
    (``data.jsonl row 3: not valid JSON (...)``); so does a corrupt ``.gz`` file.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    rows = []
    number = 0
    try:
        with opener(path, "rb") as fh:
            while line := fh.readline(MAX_ROW_BYTES + 1):
                number += 1
                where = f"{path} row {number}"
                if len(line) > MAX_ROW_BYTES and not line.endswith(b"\n"):
                    raise error_cls(f"{where}: longer than {MAX_ROW_BYTES // (1024 * 1024)} MiB (the row limit)")
                text = decode_utf8(line, where, error_cls)
                if not text.strip():
                    continue
                row = parse_json(text, where, error_cls)
                if not isinstance(row, dict):
                    raise error_cls(f"{where}: expected a JSON object, got {type(row).__name__}")
                rows.append((number, row))
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise error_cls(f"{path} row {number + 1}: not a readable gzip file ({exc or type(exc).__name__})") from None
    return rows
