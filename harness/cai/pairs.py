"""Prebuilt preference sets for the cai* plugins (``--align-opt pairs=...``): a JSONL file or ``demo``.

A file has one JSON object per line with non-empty string fields ``prompt``, ``chosen`` and
``rejected`` (other fields are ignored), e.g. refusals written by a stronger or safety-tuned
model (chosen) against compliant answers (rejected). SFT trains on prompt -> chosen, DPO on
chosen > rejected. The pairs are used as given: no judge runs on them.

A labelled file (``prompt``, ``response``, ``is_harmful`` per row, as `harness data split` writes its
``cai.jsonl``) is read as pairs too: for each prompt with both kinds of response, its acceptable responses
(chosen) against its red ones (rejected), the i-th with the i-th. On SQuARe's S-CAI20K split that gives one pair
per prompt that has both: a preference set for a model that cannot revise itself (the tiny test model; the CI run
of docs/paper.md), not the paper's self-revisions.

``demo`` is the project's templated set for the embedded and tiny models: refusals (chosen) vs
templated compliance (rejected) on the CAI-reserved demo prompts, which the demo clients never
see (:func:`harness.data.demo.demo_cai_pairs`).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.cai.dataset import CaiDataError, PreferencePair, differs
from harness.data.demo import demo_cai_pairs
from harness.data.normalize import prompt_digest
from harness.jsonl import read_jsonl

DEMO = "demo"
FIELDS = ("prompt", "chosen", "rejected")


def load_pairs(source: str) -> list[PreferencePair]:
    """``demo``, a JSONL file of {prompt, chosen, rejected}, or a labelled JSONL file of {prompt, response,
    is_harmful}; every row is checked (file and line named)."""
    if source == DEMO:
        return [PreferencePair(p, chosen=c, rejected=r) for p, c, r in demo_cai_pairs()]
    path = Path(source).expanduser()
    if not path.is_file():
        raise CaiDataError(f"pairs={source!r} is neither 'demo' nor an existing JSONL file of {{prompt, chosen, rejected}}")
    rows = list(read_jsonl(path, CaiDataError))
    labelled = bool(rows) and "chosen" not in rows[0][1] and {"response", "is_harmful"} <= set(rows[0][1])
    pairs = labelled_pairs(rows, path) if labelled else [_pair(row, f"{path} row {n}") for n, row in rows]
    if not pairs:
        raise CaiDataError(f"{path} has no preference pairs" + (" (no prompt has both an acceptable and a red "
                                                                 "response)" if labelled else ""))
    return pairs


def _pair(row: dict, where: str) -> PreferencePair:
    bad = [f for f in FIELDS if not isinstance(row.get(f), str) or not row[f].strip()]
    if bad:
        raise CaiDataError(f"{where}: {', '.join(bad)} must be non-empty string(s)")
    if not differs(row["chosen"], row["rejected"]):
        raise CaiDataError(f"{where}: chosen and rejected are the same text; nothing to prefer")
    return PreferencePair(row["prompt"].strip(), chosen=row["chosen"].strip(), rejected=row["rejected"].strip())


def labelled_pairs(rows: list[tuple[int, dict]], path: Path) -> list[PreferencePair]:
    """Per prompt (normalised), its acceptable responses against its red ones, the i-th with the i-th."""
    kinds: dict[str, tuple[str, list[str], list[str]]] = {}
    for number, row in rows:
        where = f"{path} row {number}"
        if not all(isinstance(row.get(f), str) and row[f].strip() for f in ("prompt", "response")):
            raise CaiDataError(f"{where}: prompt and response must be non-empty strings")
        if not isinstance(row.get("is_harmful"), bool):
            raise CaiDataError(f"{where}: is_harmful must be true or false")
        prompt = row["prompt"].strip()
        _, good, red = kinds.setdefault(prompt_digest(prompt), (prompt, [], []))
        (red if row["is_harmful"] else good).append(row["response"].strip())
    return [PreferencePair(prompt, chosen=c, rejected=r) for prompt, good, red in kinds.values()
            for c, r in zip(good, red) if differs(c, r)]


def write_pairs(pairs: list[PreferencePair], path: str | Path) -> Path:
    """Write pairs in the format :func:`load_pairs` reads."""
    path = Path(path)
    path.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected},
                                       ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    return path
