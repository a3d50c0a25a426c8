"""Labelled sources of (prompt, response, is_harmful) samples: demo, SQuARe, hh-rlhf, files, hub."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.data.demo import demo_refusals, demo_samples
from harness.data.samples import DataError, to_sample
from harness.evals.files import DATA_ENV
from harness.jsonl import decode_utf8, parse_json, read_jsonl
from harness.types import ChatSample

HH_RLHF_HUB = "Anthropic/hh-rlhf"
# Local row files, told apart by suffix: JSON Lines (optionally gzip-compressed) or one JSON list.
ROW_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json")


def read_json_file(path: Path) -> Any:
    """The JSON value in ``path``; :class:`DataError` naming the file when it is not UTF-8 or not JSON."""
    return parse_json(decode_utf8(path.read_bytes(), str(path), DataError, lines=True), str(path), DataError)


def split_transcript(text: str, source: str, index: int) -> tuple[str, str]:
    """'\\n\\nHuman: q\\n\\nAssistant: a' -> (prompt, last assistant reply). Earlier turns stay in the prompt."""
    head, sep, reply = text.rpartition("\n\nAssistant:")
    if not sep or "Human:" not in head:
        raise DataError(f"{source} row {index}: not a Human/Assistant transcript")
    prompt = head.strip()
    if prompt.count("Human:") == 1 and prompt.startswith("Human:"):
        prompt = prompt[len("Human:") :].strip()
    return prompt, reply.strip()


def hh_rlhf_rows(rows: Iterable[tuple[int, Any]], source: str) -> tuple[list[ChatSample], list[ChatSample]]:
    """hh-rlhf pairs from ``(row number, row)``: ``chosen`` -> acceptable, ``rejected`` -> red."""
    good, bad = [], []
    for i, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("chosen"), str) or not isinstance(row.get("rejected"), str):
            raise DataError(f"{source} row {i}: expected string fields 'chosen' and 'rejected'")
        prompt, chosen = split_transcript(row["chosen"], source, i)
        _, rejected = split_transcript(row["rejected"], source, i)
        if not chosen or not rejected or chosen == rejected:
            continue
        good.append(to_sample({"prompt": prompt, "response": chosen, "is_harmful": False}, source, i, "harmless-base"))
        bad.append(to_sample({"prompt": prompt, "response": rejected, "is_harmful": True}, source, i, "harmless-base"))
    return good, bad


def load_hh_rlhf(path: str | None) -> tuple[list[ChatSample], list[ChatSample]]:
    if path is None:
        from datasets import load_dataset

        rows = load_dataset(HH_RLHF_HUB, data_dir="harmless-base", split="test")
        return hh_rlhf_rows(enumerate(rows, 1), f"{HH_RLHF_HUB}:harmless-base")
    p = Path(path)
    if p.is_dir():
        candidates = [p / "test.jsonl.gz", p / "harmless-base" / "test.jsonl.gz"]
        p = next((c for c in candidates if c.is_file()), candidates[0])
    if not p.is_file():
        raise DataError(f"hh-rlhf file {p} does not exist")
    return hh_rlhf_rows(read_jsonl(p, DataError), str(p))


SQUARE_SPLIT_FILES = ("response_train.json", "response_valid.json", "response_test.json")
SQUARE_OOD_FILE = "response_test_ood.json"


def load_square(path: str | None) -> tuple[list[ChatSample], list[ChatSample]]:
    """SQuARe responses (English fields): ``acceptable? == 0`` -> red.

    ``path`` is a response file or SQuARe's data directory. A directory is read as its train, valid and test
    response files (those present; the paper's 20K splits are cut from them), or, when it has none of them, as
    ``response_test_ood.json`` (all that ``shared/data/square`` holds). The OOD file is never added to the other
    three: it is SQuARe's out-of-distribution test set."""
    if path is None:
        raise DataError("data.source square needs data.path: a SQuARe response_*.json file or its directory")
    p = Path(path)
    if p.is_dir():
        files = [p / name for name in SQUARE_SPLIT_FILES if (p / name).is_file()] or [p / SQUARE_OOD_FILE]
    else:
        files = [p]
    good, bad = [], []
    for f in files:
        g, b = _square_file(f)
        good += g
        bad += b
    return good, bad


def _square_file(p: Path) -> tuple[list[ChatSample], list[ChatSample]]:
    if not p.is_file():
        raise DataError(f"SQuARe file {p} does not exist")
    rows = read_json_file(p)
    if not isinstance(rows, list):
        raise DataError(f"{p}: expected a JSON list of SQuARe responses")
    good, bad = [], []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "acceptable?" not in row:
            raise DataError(f"{p} row {i}: missing field 'acceptable?'")
        sample = to_sample(
            {
                "prompt": row.get("question_en"),
                "response": row.get("response_en"),
                "is_harmful": not bool(row["acceptable?"]),
                "category": row.get("question_category"),
            }
            if "question_en" in row and "response_en" in row
            else {k: row.get(k) for k in ("prompt", "response")} | {"is_harmful": not bool(row["acceptable?"])},
            str(p),
            i,
        )
        (bad if sample.is_harmful else good).append(sample)
    return good, bad


def load_rows_file(path: Path) -> tuple[list[ChatSample], list[ChatSample]]:
    """A local .jsonl/.jsonl.gz (JSON Lines) or other (.json: one JSON list) file of
    {prompt, response, is_harmful[, category]} rows."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.name.lower().endswith((".jsonl", ".jsonl.gz")):
        return _split_labelled(read_jsonl(path, DataError), str(path))
    rows = read_json_file(path)
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
    return _split_labelled(enumerate(rows, 1), str(path))


def _split_labelled(rows: Iterable[tuple[int, Any]], source: str) -> tuple[list[ChatSample], list[ChatSample]]:
    """(acceptable, red) samples of ``(row number, row)``; every row needs ``is_harmful``."""
    samples = []
    for i, row in rows:
        sample = to_sample(row, source, i)
        if sample.is_harmful is None:
            raise DataError(f"{source} row {i}: missing field 'is_harmful' (needed to build a mixture)")
        samples.append(sample)
    return [s for s in samples if not s.is_harmful], [s for s in samples if s.is_harmful]


def local_copy(folder: str) -> str | None:
    """``$HARNESS_DATA/<folder>`` (the benchmark data folder, laid out like shared/data) when it exists, else None
    (then the hub). A preset can name ``data.source: hh-rlhf`` and still read a local copy."""
    root = os.environ.get(DATA_ENV)
    return str(Path(root).expanduser() / folder) if root and (Path(root).expanduser() / folder).exists() else None


def check_local_file(source: str) -> None:
    """Read a local .jsonl/.json ``source`` once, raising :class:`DataError` on a bad row (the CLI calls this before
    it creates the tracking store, so bad rows create nothing); other sources are read by the engine."""
    if source not in ("demo", "square", "hh-rlhf") and (source.lower().endswith(ROW_FILE_SUFFIXES) or Path(source).exists()):
        load_rows_file(Path(source))


def load_labelled(source: str, path: str | None, pool: int, seed: int) -> tuple[list[ChatSample], list[ChatSample]]:
    """(acceptable, red) samples of ``source``; ``pool`` sizes the generated demo set."""
    if source == "demo":
        benign, harmful = demo_samples(pool, pool, seed)
        return benign + demo_refusals(pool // 4, seed), harmful
    if source == "square":
        return load_square(path or local_copy("square"))
    if source == "hh-rlhf":
        return load_hh_rlhf(path or local_copy("hh_rlhf"))
    if source.lower().endswith(ROW_FILE_SUFFIXES) or Path(source).exists():
        return load_rows_file(Path(source))
    if source.count("/") == 1:
        from datasets import load_dataset

        rows = load_dataset(source, split="train")
        return _split_labelled(((i, dict(r)) for i, r in enumerate(rows, 1)), source)
    raise DataError(f"unknown data source {source!r}: use demo, square, hh-rlhf, a .jsonl/.jsonl.gz/.json file or a hub id")
