"""Prebuilt preference sets for the cai* plugins (``--align-opt pairs=...``): a JSONL file or ``demo``.

A file has one JSON object per line with non-empty string fields ``prompt``, ``chosen`` and
``rejected`` (other fields are ignored), e.g. refusals written by a stronger or safety-tuned
model (chosen) against compliant answers (rejected). SFT trains on prompt -> chosen, DPO on
chosen > rejected. The pairs are used as given: no judge runs on them.

``demo`` is the project's templated set for the embedded and tiny models: refusals (chosen) vs
templated compliance (rejected) on the CAI-reserved demo prompts, which the demo clients never
see (:func:`harness.data.demo.demo_cai_pairs`).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.cai.dataset import CaiDataError, PreferencePair, differs
from harness.data.demo import demo_cai_pairs
from harness.jsonl import read_jsonl

DEMO = "demo"
FIELDS = ("prompt", "chosen", "rejected")


def load_pairs(source: str) -> list[PreferencePair]:
    """``demo`` or a JSONL file of {prompt, chosen, rejected}; every row is checked (file and line named)."""
    if source == DEMO:
        return [PreferencePair(p, chosen=c, rejected=r) for p, c, r in demo_cai_pairs()]
    path = Path(source).expanduser()
    if not path.is_file():
        raise CaiDataError(f"pairs={source!r} is neither 'demo' nor an existing JSONL file of {{prompt, chosen, rejected}}")
    pairs = []
    for number, row in read_jsonl(path, CaiDataError):
        where = f"{path} row {number}"
        bad = [f for f in FIELDS if not isinstance(row.get(f), str) or not row[f].strip()]
        if bad:
            raise CaiDataError(f"{where}: {', '.join(bad)} must be non-empty string(s)")
        if not differs(row["chosen"], row["rejected"]):
            raise CaiDataError(f"{where}: chosen and rejected are the same text; nothing to prefer")
        pairs.append(PreferencePair(row["prompt"].strip(), chosen=row["chosen"].strip(), rejected=row["rejected"].strip()))
    if not pairs:
        raise CaiDataError(f"{path} has no preference pairs")
    return pairs


def write_pairs(pairs: list[PreferencePair], path: str | Path) -> Path:
    """Write pairs in the format :func:`load_pairs` reads."""
    path = Path(path)
    path.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected},
                                       ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    return path
