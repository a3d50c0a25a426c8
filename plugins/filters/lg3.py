"""`lg3`: Llama Guard 3 filter. Drops a sample when P("unsafe") of its agent turn >= threshold.

Options (``--filter-opt KEY=VALUE``; ``--filter-model DIR`` sets ``model``):
``model`` a guard directory from ``harness filter train``, ``meta-llama/Llama-Guard-3-1B``/``-8B``,
a local causal LM or ``smollm2-135m`` (default); ``threshold`` (0.5); ``batch_size`` (8);
``max_length`` in tokens (1024); ``score`` 'pair' (P over safe/unsafe) or 'vocab' (full softmax).
"""

from __future__ import annotations

from pathlib import Path

from harness.guard.finetune import train_guard
from harness.guard.scoring import SCORE_MODES, GuardScorer, load_guard
from harness.guard.settings import FilterTrainSettings
from harness.guard.threshold_filter import ThresholdFilter
from harness.models import SMOLLM2
from harness.types import ChatSample


class LlamaGuardFilter(ThresholdFilter):
    name = "lg3"

    def __init__(self, model: str = SMOLLM2, threshold: float = 0.5, batch_size: int = 8,
                 max_length: int = 1024, score: str = "pair"):
        if score not in SCORE_MODES:
            raise ValueError(f"score must be one of {', '.join(SCORE_MODES)}, got {score!r}")
        if batch_size < 1 or max_length < 64:
            raise ValueError("batch_size must be >= 1 and max_length >= 64")
        super().__init__(threshold)
        self.model, self.batch_size, self.max_length, self.score_mode = str(model), batch_size, max_length, score
        self._scorer: GuardScorer | None = None

    @property
    def identity(self) -> str:
        return f"lg3 model={self.model} max_length={self.max_length} score={self.score_mode}"

    @property
    def scorer(self) -> GuardScorer:
        """The guard, loaded on first use (never the engine's model)."""
        if self._scorer is None:
            self._scorer = GuardScorer(load_guard(self.model), self.batch_size, self.max_length, self.score_mode)
        return self._scorer

    def _score(self, samples: list[ChatSample]) -> list[float]:
        return self.scorer.score(samples)

    @classmethod
    def train(cls, samples: list[ChatSample], out: Path, base: str | None, settings: FilterTrainSettings) -> dict:
        """Fine-tune a guard adapter on labelled samples; ``--filter-model out`` then loads it."""
        return train_guard(base or SMOLLM2, samples, out, settings)
