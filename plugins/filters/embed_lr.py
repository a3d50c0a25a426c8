"""`embed-lr`: embed the response with all-MiniLM-L6-v2, score P(unsafe) with a logistic-regression head.

The ELECTRA-style light baseline: fast on CPU. ``model`` is a directory written by
``harness filter train --filter embed-lr --out DIR`` (default: the shipped head,
``plugins/filters/guards/embed-lr-minilm``); options ``threshold`` (``auto``: calibrated on
the run's validation split, see :mod:`harness.guard.calibration`; or a number), ``batch_size`` (32),
``shared_scores`` (a directory of scores shared with other runs, :mod:`harness.guard.shared_scores`).
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.guard.defaults import EMBED_LR_HEAD
from harness.guard.embedding import HEAD_FILE, LogisticHead, SentenceEncoder, fit_head
from harness.guard.samples import check_samples
from harness.guard.settings import FilterTrainSettings
from harness.guard.threshold_filter import AUTO, ThresholdFilter
from harness.types import ChatSample


class EmbedLRFilter(ThresholdFilter):
    name = "embed-lr"
    card_file = HEAD_FILE  # where `harness filter train` records the held-out metrics

    def __init__(self, model: str | None = None, threshold: float | str = AUTO, batch_size: int = 32,
                 shared_scores: str | None = None):
        model = model or EMBED_LR_HEAD
        super().__init__(threshold, shared_scores)
        self.model, self.head, self.batch_size = str(model), LogisticHead.load(model), batch_size
        self._encoder: SentenceEncoder | None = None

    @property
    def identity(self) -> str:
        return f"embed-lr model={self.model}"

    def _score(self, samples: list[ChatSample]) -> list[float]:
        if self._encoder is None:
            self._encoder = SentenceEncoder(self.head.encoder, self.batch_size)
        return self.head.predict(self._encoder.encode([s.response for s in samples])).tolist()

    @classmethod
    def train(cls, samples: list[ChatSample], out: Path, base: str | None, settings: FilterTrainSettings) -> dict:
        """Fit the head on labelled samples (``base``: another encoder directory; default MiniLM)."""
        check_samples(samples, "training set")
        started = time.perf_counter()
        encoder = SentenceEncoder(base, settings.batch_size)
        head = fit_head(encoder.encode([s.response for s in samples]), [bool(s.is_harmful) for s in samples],
                        settings.seed, base)
        result = {"train/samples": float(len(samples)), "train/seconds": time.perf_counter() - started}
        head.save(out, {"metrics": result})
        return result
