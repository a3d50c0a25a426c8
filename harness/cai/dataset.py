"""The CAI dataset: (prompt, red, critique, revision) records, their SFT and DPO views, and JSONL storage."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.data.normalize import normalize_prompt

RECORDS_FILE = "cai.jsonl"
META_FILE = "meta.json"


class CaiDataError(ValueError):
    """The CAI data (a build directory, a pairs file, the pairs kept by the judge) is missing, malformed or empty.

    ``resumable = False``: fixing it means changing the run's options, which ``--resume`` keeps.
    """

    resumable = False


def differs(a: str, b: str) -> bool:
    """Whether two responses differ once normalised (case, spacing, edge punctuation)."""
    return normalize_prompt(a) != normalize_prompt(b)


@dataclass(frozen=True)
class CaiRecord:
    """One red-teaming prompt after the three turns, with the principle used."""

    prompt: str
    principle: str
    red: str
    critique: str
    revision: str

    @property
    def usable(self) -> bool:
        """A revision that exists and differs from the red response, normalised (else there is nothing to learn)."""
        return bool(normalize_prompt(self.revision)) and differs(self.revision, self.red)


@dataclass(frozen=True)
class PreferencePair:
    """A DPO pair: the preferred (chosen) and dispreferred (rejected) answer to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str


@dataclass
class CaiDataset:
    """The built records; the SFT set is prompt -> revision, the DPO set chosen = revision, rejected = red."""

    records: list[CaiRecord]
    path: Path | None = None

    def dpo_pairs(self) -> list[PreferencePair]:
        return [PreferencePair(r.prompt, chosen=r.revision, rejected=r.red) for r in self.records if r.usable]

    @classmethod
    def load(cls, directory: str | Path) -> CaiDataset:
        """A finished build directory (as printed by ``harness cai build``)."""
        d = Path(directory)
        if not (d / RECORDS_FILE).is_file():
            partial = " (an unfinished build: run `harness cai build` again to resume it)" if any(d.glob("*.partial")) else ""
            raise CaiDataError(f"{d} is not a finished CAI build: {RECORDS_FILE} is missing{partial}")
        return cls(read_records(d / RECORDS_FILE, strict=True), d)


def record_line(record: CaiRecord) -> str:
    return json.dumps(asdict(record), ensure_ascii=False) + "\n"


def read_records(path: Path, strict: bool) -> list[CaiRecord]:
    """Records of a JSONL file; with ``strict=False`` a torn last line (an interrupted write) is dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(CaiRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            if not strict and i == len(lines) - 1:
                break
            raise CaiDataError(f"{path} line {i + 1}: not a CAI record ({exc})") from exc
    return records
