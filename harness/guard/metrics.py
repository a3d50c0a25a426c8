"""Unsafe-detection quality as in the paper's Table 2: accuracy, precision, recall and Hmean (F1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
