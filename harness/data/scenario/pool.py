"""The scenario's prompts: the project's harmful requests (shipped, frozen) and SQuARe's non-sensitive questions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from harness.data.samples import DataError
from harness.data.sources import read_json_file
from harness.jsonl import read_jsonl

POOL_FILE = Path(__file__).with_name("harmful_requests.jsonl")
"""424 harmful requests written for this project (README.md beside it: date, sha256, counts, licence)."""
GUARD_POOL_FILE = Path(__file__).with_name("guard_requests.jsonl")
"""The guard's own harmful requests: disjoint from :data:`POOL_FILE` (README.md)."""
GUARD_BENIGN_FILE = Path(__file__).with_name("guard_benign_requests.jsonl")
"""The guard's own benign requests, in place of SQuARe's questions (README.md)."""
SQUARE_FILES = ("question_valid.json", "question_test.json")
BENIGN = "benign"


@dataclass(frozen=True)
class Request:
    """One prompt of the scenario and where it comes from."""

    id: str  # "s1-001" (the pool's id) or "question_test.json#17" (SQuARe file and 1-based position)
    prompt: str
    category: str  # a Llama Guard 3 hazard code (S1..S14), or "benign"
    source: str  # the pool's path in the project, or "square/<file>"

    @property
    def harmful(self) -> bool:
        return self.category != BENIGN


def pool_sha256(path: Path = POOL_FILE) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_name(path: Path) -> str:
    """A shipped pool's path in the project (``harness/data/scenario/NAME``), as provenance records it."""
    return f"harness/data/scenario/{path.name}"


POOL_SOURCE = source_name(POOL_FILE)


def harmful_requests(path: Path = POOL_FILE) -> list[Request]:
    """A pool's rows, checked: string ``id``, ``category`` and ``prompt``, ids unique (the guard's benign pool has
    the same schema, with category ``benign``)."""
    out, seen = [], set()
    for n, row in read_jsonl(path, DataError):
        values = [row.get(key) for key in ("id", "category", "prompt")]
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise DataError(f"{path} row {n}: expected non-empty string fields id, category and prompt")
        if values[0] in seen:
            raise DataError(f"{path} row {n}: id {values[0]!r} appears twice")
        seen.add(values[0])
        out.append(Request(values[0], values[2], values[1], source_name(path)))
    return out


def benign_requests(square_dir: Path) -> list[Request]:
    """SQuARe's non-sensitive questions (``"sensitive?": 0``, English ``question_en``) of its valid and test files."""
    out = []
    for name in SQUARE_FILES:
        path = square_dir / name
        if not path.is_file():
            raise DataError(f"SQuARe question file {path} does not exist (expected {', '.join(SQUARE_FILES)} in {square_dir})")
        rows = read_json_file(path)
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of SQuARe questions")
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict) or row.get("sensitive?") != 0:
                continue
            if not isinstance(row.get("question_en"), str) or not row["question_en"].strip():
                raise DataError(f"{path} row {i}: a non-sensitive question without a string 'question_en'")
            out.append(Request(f"{name}#{i}", row["question_en"].strip(), BENIGN, f"square/{name}"))
    return out
