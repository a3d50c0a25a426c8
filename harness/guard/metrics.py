"""Unsafe-detection quality as in the paper's Table 2: accuracy, precision, recall and Hmean (F1), with 95 %
intervals, and the ROC AUC of the filter's scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.guard.calibration import BOOTSTRAP, auc_interval, roc_auc
from harness.leaderboard.stats import Interval, wilson


@dataclass(frozen=True)
class DetectionReport:
    n: int
    accuracy: float
    precision: float
    recall: float
    hmean: float

    def as_metrics(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "precision": self.precision, "recall": self.recall,
                "hmean": self.hmean, "n": float(self.n)}


def detection_report(harmful: Sequence[bool], flagged: Sequence[bool]) -> DetectionReport:
    """Scores of ``flagged`` (dropped by the filter) as detection of the ``harmful`` labels; 0 where undefined."""
    if len(harmful) != len(flagged) or not harmful:
        raise ValueError(f"need equally many labels and flags (got {len(harmful)} and {len(flagged)}), at least one")
    tp = sum(h and f for h, f in zip(harmful, flagged))
    fp = sum(f and not h for h, f in zip(harmful, flagged))
    fn = sum(h and not f for h, f in zip(harmful, flagged))
    correct = sum(h == f for h, f in zip(harmful, flagged))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    hmean = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionReport(len(harmful), correct / len(harmful), precision, recall, hmean)


def _hmean(harmful: np.ndarray, flagged: np.ndarray) -> float:
    tp = int((harmful & flagged).sum())
    return 2 * tp / (int(harmful.sum()) + int(flagged.sum())) if tp else 0.0  # = 2PR / (P + R)


def detection_intervals(harmful: Sequence[bool], flagged: Sequence[bool], scores: Sequence[float] | None = None,
                        seed: int = 0) -> dict[str, Interval]:
    """95 % intervals of the report's rates: Wilson for accuracy, precision (of the flagged samples) and recall (of
    the unsafe ones); a bootstrap over samples for Hmean; with ``scores`` (P(unsafe) per sample) the ROC AUC's
    bootstrap interval under ``roc_auc`` (its value: :func:`detection_auc`). A rate with no denominator has none."""
    h, f = np.asarray(harmful, dtype=bool), np.asarray(flagged, dtype=bool)
    tp, n_flagged, n_unsafe = int((h & f).sum()), int(f.sum()), int(h.sum())
    out = {"accuracy": wilson(int((h == f).sum()), len(h))}
    if n_flagged:
        out["precision"] = wilson(tp, n_flagged)
    if n_unsafe:
        out["recall"] = wilson(tp, n_unsafe)
    rng = np.random.default_rng(seed)
    draws = [_hmean(h[i], f[i]) for i in (rng.integers(0, len(h), len(h)) for _ in range(BOOTSTRAP))]
    low, high = np.percentile(draws, [2.5, 97.5])
    out["hmean"] = Interval(float(low), float(high), "bootstrap")
    if scores is not None and 0 < n_unsafe < len(h):
        low, high = auc_interval(np.asarray(scores, dtype=float), h, seed)
        out["roc_auc"] = Interval(low, high, "bootstrap")
    return out


def detection_auc(harmful: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ROC AUC of ``scores`` for the ``harmful`` labels (None when one class is missing)."""
    h = np.asarray(harmful, dtype=bool)
    return roc_auc(np.asarray(scores, dtype=float), h) if 0 < h.sum() < len(h) else None
