"""Red-teaming prompt sources for the CAI build: the demo set, AdvBench CSV, hh-rlhf, JSONL or text files."""

from __future__ import annotations

import csv
from pathlib import Path

from harness.data.demo import demo_cai_prompts
from harness.data.normalize import prompt_digest
from harness.data.samples import DataError
from harness.jsonl import read_jsonl

SOURCES_HELP = (
    "demo (the 16 CAI-reserved demo prompts, which the demo clients never see), a .csv with a 'goal' or 'prompt' column (AdvBench), "
    "a .jsonl[.gz] with 'prompt' fields or hh-rlhf 'chosen' transcripts, or a .txt with one prompt per line"
)


def load_prompts(source: str, limit: int | None = None) -> list[str]:
    """Red-teaming prompts from ``source`` (see ``SOURCES_HELP``), each once (a labelled file such as `harness data
    split`'s ``cai.jsonl`` holds several responses per prompt: 20,000 rows, ~11,000 prompts on SQuARe), the first
    ``limit`` if given."""
    if source == "demo":
        prompts = demo_cai_prompts()  # the CAI-reserved demo prompts: no demo client draws them
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"prompt source {source!r} is neither 'demo' nor an existing file; use {SOURCES_HELP}")
        name = path.name.lower()
        if name.endswith(".csv"):
            prompts = _csv_prompts(path)
        elif name.endswith((".jsonl", ".jsonl.gz")):
            prompts = [_row_prompt(row, path, i) for i, row in read_jsonl(path, DataError)]
        elif name.endswith(".txt"):
            prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            raise DataError(f"prompt file {path} has an unknown type; use {SOURCES_HELP}")
    firsts: dict[str, str] = {}
    for prompt in prompts:
        firsts.setdefault(prompt_digest(prompt), prompt)
    prompts = list(firsts.values())
    if not prompts:
        raise DataError(f"prompt source {source!r} has no prompts")
    return prompts[:limit] if limit is not None else prompts


def _csv_prompts(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        column = next((c for c in ("goal", "prompt") if c in (reader.fieldnames or [])), None)
        if column is None:
            raise DataError(f"{path}: needs a 'goal' or 'prompt' column (has {', '.join(reader.fieldnames or [])})")
        return [row[column].strip() for row in reader if row[column] and row[column].strip()]


def _row_prompt(row: dict, path: Path, index: int) -> str:
    if isinstance(row.get("prompt"), str):
        return row["prompt"].strip()
    if isinstance(row.get("chosen"), str):  # hh-rlhf: the first human turn
        first = row["chosen"].split("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)[0].strip()
        if first:
            return first
    raise DataError(f"{path} row {index}: expected a string field 'prompt' or an hh-rlhf 'chosen' transcript")
