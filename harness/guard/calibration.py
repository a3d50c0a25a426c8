"""A filter's threshold calibrated on labelled server-held validation samples (``threshold=auto``).

A guard's P(unsafe) scale shifts with the data it sees (the shipped SmolLM2 guard scores the templated demo set
between 0.43 and 0.74, safe and red alike, so 0.5 drops almost everything). The run's validation split
(``RunInfo.heldout``: the run's own sources at its harmful ratio, never given to a client) says where the scale
sits: the threshold is the score with the best F1 of unsafe detection on it (ties: the higher threshold, which
drops less).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

MIN_PER_CLASS = 4
"""Fewer safe or unsafe validation samples than this: no calibration (the default threshold stays)."""


@dataclass(frozen=True)
class Calibration:
    threshold: float
    n_safe: int
    n_unsafe: int
    precision: float
    recall: float
    f1: float

    def as_record(self) -> dict:
        return asdict(self)


def calibrate_threshold(scores: Sequence[float], unsafe: Sequence[bool]) -> Calibration | None:
    """The threshold (drop when score >= it) with the best F1 on ``scores`` labelled ``unsafe``; None when
    either class has fewer than :data:`MIN_PER_CLASS` samples."""
    n_unsafe = sum(unsafe)
    n_safe = len(unsafe) - n_unsafe
    if min(n_safe, n_unsafe) < MIN_PER_CLASS:
        return None
    best: Calibration | None = None
    for t in sorted(set(scores), reverse=True):  # descending: a tie keeps the higher threshold
        tp = sum(s >= t and u for s, u in zip(scores, unsafe))
        flagged = sum(s >= t for s in scores)
        precision, recall = tp / flagged, tp / n_unsafe
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        if best is None or f1 > best.f1:
            best = Calibration(float(t), n_safe, n_unsafe, precision, recall, f1)
    return best
