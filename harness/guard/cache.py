"""Per-run memo of filter scores: each distinct sample is scored once, however often its client is sampled."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.guard.samples import sample_key
from harness.types import ChatSample, FilterVerdict


class ScoreCache:
    """Scores samples with ``score_fn`` (a batch function), remembering every answer."""

    def __init__(self, score_fn: Callable[[list[ChatSample]], list[float]]):
        self.score_fn = score_fn
        self._scores: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._scores)

    def clear(self) -> None:
        self._scores.clear()

    def scores(self, samples: Sequence[ChatSample]) -> list[float]:
        new: dict[tuple[str, str], ChatSample] = {}
        for s in samples:
            key = sample_key(s)
            if key not in self._scores:
                new.setdefault(key, s)
        if new:
            fresh = self.score_fn(list(new.values()))
            if len(fresh) != len(new):
                raise RuntimeError(f"scoring returned {len(fresh)} scores for {len(new)} samples")
            self._scores.update(zip(new, map(float, fresh)))
        return [self._scores[sample_key(s)] for s in samples]


def threshold_verdict(scores: list[float], threshold: float) -> FilterVerdict:
    """Drop a sample when its unsafe score is at or above ``threshold``."""
    return FilterVerdict(keep=[score < threshold for score in scores], scores=scores)


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)
