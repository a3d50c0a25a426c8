"""Disjoint splits of one labelled source for the three roles of the paper: clients, guard, CAI.

The paper trains its clients on SQuARe20K, fine-tunes Llama Guard 3 on S-LG20K and builds its Constitutional AI
set from S-CAI20K: three parts of SQuARe that share no prompt. :func:`split_source` cuts any labelled source the
harness reads the same way: prompts (normalised, :func:`harness.data.normalize.prompt_digest`) are ranked by a
seeded hash and dealt to the splits in turn until each has its number of samples, so every sample of a prompt
lands in one split, and the same seed gives the same splits.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.data.normalize import prompt_digest
from harness.data.samples import DataError
from harness.types import ChatSample

ROLES = ("clients", "guard", "cai")


@dataclass(frozen=True)
class SplitReport:
    name: str
    samples: int
    red: int
    prompts: int


def split_source(samples: list[ChatSample], sizes: dict[str, int], seed: int = 0,
                 red_shares: dict[str, float] | None = None) -> dict[str, list[ChatSample]]:
    """``sizes[name]`` samples per split (fewer where the source runs out), no prompt in two splits.

    ``red_shares[name]`` (optional) makes that split exactly ``round(share * size)`` red and the rest acceptable:
    it takes from each prompt dealt to it only samples of a class it still has room for (the prompt's other
    samples go to no split), and a prompt with none it can use is dealt to the next split in turn. Without it a
    split keeps the source's own mix (SQuARe's files: 52 % red, where the paper's clients hold 30 %)."""
    red_shares = red_shares or {}
    groups: dict[str, list[ChatSample]] = defaultdict(list)
    for s in samples:
        groups[prompt_digest(s.prompt)].append(s)
    order = sorted(groups, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
    out: dict[str, list[ChatSample]] = {name: [] for name in sizes}
    room = {name: _room(n, red_shares.get(name)) for name, n in sizes.items()}  # {class: free places}
    open_splits = [name for name, n in sizes.items() if n > 0]
    turn = 0
    for digest in order:
        if not open_splits:
            break
        for k in range(len(open_splits)):
            name = open_splits[(turn + k) % len(open_splits)]
            taken = _take(groups[digest], room[name])
            if taken:
                break
        else:
            continue  # no open split can use this prompt's samples
        out[name] += taken
        if len(out[name]) >= sizes[name]:
            open_splits.remove(name)
            turn += k
        else:
            turn += k + 1
    return out


def _room(size: int, red_share: float | None) -> dict[bool | None, int]:
    """Free places per class (True: red, False: acceptable) or, with no share, for any sample (None)."""
    if red_share is None:
        return {None: size}
    red = round(red_share * size)
    return {True: red, False: size - red}


def _take(group: list[ChatSample], room: dict[bool | None, int]) -> list[ChatSample]:
    """The samples of one prompt that fit in ``room`` (updated), in their order."""
    taken = []
    for s in group:
        key = None if None in room else bool(s.is_harmful)
        if room[key] > 0:
            room[key] -= 1
            taken.append(s)
    return taken


def write_splits(splits: dict[str, list[ChatSample]], out: Path, source: str, seed: int,
                 red_shares: dict[str, float] | None = None) -> list[SplitReport]:
    """``<name>.jsonl`` (prompt, response, is_harmful, category) and ``<name>.sha256`` (its prompts, in the
    ``train_prompts.sha256`` format) per split, and ``manifest.json`` (counts), under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for name, rows in splits.items():
        if not rows:
            raise DataError(f"split {name!r} got no samples: the source has too few prompts for the sizes asked")
        (out / f"{name}.jsonl").write_text("".join(json.dumps(
            {"prompt": s.prompt, "response": s.response, "is_harmful": s.is_harmful, "category": s.category},
            ensure_ascii=False) + "\n" for s in rows), encoding="utf-8")
        digests = sorted({prompt_digest(s.prompt) for s in rows})
        (out / f"{name}.sha256").write_text("".join(d + "\n" for d in digests))
        reports.append(SplitReport(name, len(rows), sum(bool(s.is_harmful) for s in rows), len(digests)))
    manifest = {"source": source, "seed": seed, "red_shares": red_shares or {}, "splits": [asdict(r) for r in reports]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return reports
