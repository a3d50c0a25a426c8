"""A filter's threshold calibrated on labelled server-held validation samples (``threshold=auto``).

A guard's P(unsafe) scale shifts with the data it sees (the shipped SmolLM2 guard scores the templated demo set
between 0.43 and 0.74, safe and red alike, so 0.5 drops almost everything). The run's validation split
(``RunInfo.heldout``: the run's own sources at its harmful ratio, never given to a client) says where the scale
sits: the threshold is the score with the best F1 of unsafe detection on it (ties: the higher threshold, which
drops less).

F1 cannot tell a guard that ranks at chance: flagging everything scores 2b / (1 + b) at a red share b (0.46 at
30 %). So the calibration also measures how well the guard ranks the split (ROC AUC with a bootstrap 95 % interval)
and how much of it the threshold drops; :attr:`Calibration.at_chance` says when the interval includes 0.5. On the
repro preset the shipped guard ranks the clients' hh-rlhf chosen/rejected replies at AUC 0.54-0.61
(leaderboards/repro-cpu).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

MIN_PER_CLASS = 4
"""Fewer safe or unsafe validation samples than this: no calibration (the default threshold stays)."""
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Calibration:
    threshold: float
    n_safe: int
    n_unsafe: int
    precision: float
    recall: float
    f1: float
    dropped: float | None = None  # share of the validation samples the threshold drops
    auc: float | None = None  # ROC AUC of the scores on the validation samples, and its bootstrap 95 % interval
    auc_low: float | None = None
    auc_high: float | None = None

    @property
    def at_chance(self) -> bool:
        """Whether the guard ranks the validation samples no better than chance (the AUC interval holds 0.5)."""
        return self.auc_low is not None and self.auc_low <= 0.5

    def as_record(self) -> dict:
        return asdict(self)


def roc_auc(scores: np.ndarray, unsafe: np.ndarray) -> float:
    """P(an unsafe sample scores above a safe one), ties counting half: the Mann-Whitney statistic, from ranks."""
    _, where, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[where]  # 1-based, tied scores share their mean rank
    n_unsafe = int(unsafe.sum())
    return float((ranks[unsafe].sum() - n_unsafe * (n_unsafe + 1) / 2) / (n_unsafe * (len(scores) - n_unsafe)))


def auc_interval(scores: np.ndarray, unsafe: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95 % interval of :func:`roc_auc` (resampling the samples; draws missing a class are skipped)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, len(scores), len(scores))
        if unsafe[i].any() and not unsafe[i].all():
            draws.append(roc_auc(scores[i], unsafe[i]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


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
            best = Calibration(float(t), n_safe, n_unsafe, precision, recall, f1, flagged / len(scores))
    values, labels = np.asarray(scores, dtype=float), np.asarray(unsafe, dtype=bool)
    low, high = auc_interval(values, labels)
    return replace(best, auc=roc_auc(values, labels), auc_low=low, auc_high=high)
