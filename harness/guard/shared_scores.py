"""Filter scores shared by the runs of a suite: a sample one run scored is not scored again by the next.

A suite's filter rows of one seed filter the same clients with the same guard (FL + filter and FL + filter + CAI,
for each aggregator), so every row after the first would repeat the first one's scoring. A run with the filter
option ``shared_scores=DIR`` reads the scores an earlier run left in ``DIR`` before it scores anything, and adds
its own when it checkpoints. A file holds the scores of one scorer, named by a digest of its identity, which
includes a digest of the scorer's files, the torch version and the dtype it runs in: a re-trained guard or another
machine's arithmetic never reuses them. Writes replace the file whole (no torn file); two runs writing at once
can lose each other's newest scores, which only costs scoring them again.

A score depends in its last bits on the batch it was computed in (padding, bfloat16), and a guard that ranks near
chance can change its calibrated threshold over one such bit (measured on the repro preset: 0.438 or 0.223 for the
same 64 validation samples, docs/filters.md). So share a directory only between runs that score the same samples
in the same batches; a suite gives each seed its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from harness.models import cpu_has_native_bf16

log = logging.getLogger(__name__)


def files_digest(model: str) -> str:
    """A digest of every file under the directory ``model`` (names and bytes); the name itself if it is not one."""
    root = Path(model).expanduser()
    if not root.is_dir():
        return hashlib.sha256(model.encode()).hexdigest()[:16]
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def machine_signature() -> str:
    """What a scorer's arithmetic depends on besides its files: torch's version and the dtype ``auto`` picks."""
    return f"torch={torch.__version__} cuda={torch.cuda.is_available()} cpu_bf16={cpu_has_native_bf16()}"


class SharedScores:
    """The scores file of one scorer ``identity`` in ``directory``."""

    def __init__(self, directory: Path, identity: str):
        self.identity = identity
        self.path = Path(directory) / f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"
        self._known: set[str] = set()  # digests this run read from or wrote to the file

    def load(self) -> dict[str, float]:
        """The scores saved so far (none if the file is missing, unreadable or another identity's)."""
        if not self.path.is_file():
            return {}
        try:
            saved = json.loads(self.path.read_text())
        except ValueError as exc:  # a cache, not a result: score again rather than fail the run
            log.warning("%s is not a scores file (%s); scoring without it", self.path, exc)
            return {}
        if saved.get("identity") != self.identity:
            return {}
        scores = {str(k): float(v) for k, v in saved["scores"].items()}
        self._known.update(scores)
        return scores

    def add(self, scores: dict[str, float]) -> int:
        """Merge ``scores`` into the file; returns how many it did not hold yet. Scores this run already read or
        wrote are not looked up again, so a checkpoint with nothing new scored costs no file I/O."""
        if self._known.issuperset(scores):
            return 0
        merged = self.load()
        new = {k: v for k, v in scores.items() if k not in merged}
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"identity": self.identity, "scores": {**merged, **new}}))
            os.replace(tmp, self.path)
            self._known.update(new)
        return len(new)
