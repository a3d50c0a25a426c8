"""Per-run memo of filter scores: each distinct sample is scored once, however often its client is sampled."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.checkpoint import link_or_copy
from harness.guard.samples import sample_key
from harness.types import ChatSample, FilterVerdict


class ScoreCache:
    """Scores samples with ``score_fn`` (a batch function), remembering every answer by the sample's digest."""

    def __init__(self, score_fn: Callable[[list[ChatSample]], list[float]]):
        self.score_fn = score_fn
        self._scores: dict[str, float] = {}
        self._written: tuple[Path, str] | None = None  # (file, identity) holding exactly the current scores

    def __len__(self) -> int:
        return len(self._scores)

    def as_dict(self) -> dict[str, float]:
        """Every score so far, by sample digest."""
        return dict(self._scores)

    def adopt(self, scores: dict[str, float]) -> int:
        """Take the ``scores`` of samples not scored yet (another run's, by digest); returns how many."""
        new = {k: v for k, v in scores.items() if k not in self._scores}
        self._scores.update(new)
        if new:
            self._written = None
        return len(new)

    def clear(self) -> None:
        self._scores.clear()
        self._written = None

    def scores(self, samples: Sequence[ChatSample]) -> list[float]:
        keys = [sample_key(s) for s in samples]
        new: dict[str, ChatSample] = {}
        for key, s in zip(keys, samples):
            if key not in self._scores:
                new.setdefault(key, s)
        if new:
            fresh = self.score_fn(list(new.values()))
            if len(fresh) != len(new):
                raise RuntimeError(f"scoring returned {len(fresh)} scores for {len(new)} samples")
            self._scores.update(zip(new, map(float, fresh)))
            self._written = None
        return [self._scores[key] for key in keys]

    def save(self, path: Path, identity: str, live: Path | None = None) -> None:
        """Write the scores (digests only, no sample text) with the scorer's ``identity`` to ``path``.

        With ``live`` (a file outside the checkpoints), the scores are written there only when they changed
        since the last save and ``path`` is linked to it: once every client was scored, a checkpoint costs a
        hard link here, not a rewrite of every score.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        if live is None:
            path.write_text(json.dumps({"identity": identity, "scores": self._scores}))
            return
        if self._written != (live, identity) or not live.is_file():
            live.parent.mkdir(parents=True, exist_ok=True)
            tmp = live.with_name(live.name + ".tmp")
            tmp.write_text(json.dumps({"identity": identity, "scores": self._scores}))
            os.replace(tmp, live)  # a new file: checkpoints linked to the old one keep it
            self._written = (live, identity)
        link_or_copy(live, path)

    def load(self, path: Path, identity: str) -> bool:
        """Replace the scores with those in ``path`` if it holds ``identity``'s; else start empty."""
        self._scores = {}
        self._written = None
        if not path.is_file():
            return False
        saved = json.loads(path.read_text())
        if saved.get("identity") != identity:
            return False
        self._scores = {str(k): float(v) for k, v in saved["scores"].items()}
        return True


def threshold_verdict(scores: list[float], threshold: float) -> FilterVerdict:
    """Drop a sample when its unsafe score is at or above ``threshold``."""
    return FilterVerdict(keep=[score < threshold for score in scores], scores=scores)


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)
