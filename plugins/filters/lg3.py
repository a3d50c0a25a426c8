"""`lg3`: Llama Guard 3 filter. Drops a sample when P("unsafe") of its agent turn >= threshold.

Options (``--filter-opt KEY=VALUE``; ``--filter-model DIR`` sets ``model``):

* ``model``: a guard directory from ``harness filter train``, ``meta-llama/Llama-Guard-3-1B``/``-8B``,
  or a local causal LM. Unset, the run picks the guard for its own model when it starts
  (:func:`harness.guard.defaults.default_guard`): the shipped ``plugins/filters/guards/smollm2-135m-lg3``
  for ``smollm2-135m`` and ``tiny-random``, ``meta-llama/Llama-Guard-3-1B`` for any other model.
  Outside a run (``harness filter eval`` with no ``--filter-model``) the shipped guard is used.
* ``threshold`` (``auto``: the best-F1 threshold on the run's labelled server-held validation split,
  :mod:`harness.guard.calibration`, 0.5 without one; or a number); ``batch_size`` (8); ``max_length`` in tokens (1024); ``score`` 'pair'
  (P over safe/unsafe) or 'vocab' (full softmax).
* ``device`` (``auto``: the run's GPU if any, else the CPU; or ``cpu``, ``cuda:1``), ``dtype`` (``auto``) and
  ``quantization`` (``none``, ``8bit``, ``4bit``) of the guard, independent of the policy's.
* ``between_uses`` (``auto``): where the guard waits while the policy trains (:mod:`harness.guard.placement`):
  ``stay`` on its device, ``cpu`` (host memory; moved back to score the next client's new samples) or
  ``unload`` (reloaded when next needed); ``auto`` is ``stay`` on a CPU, ``cpu`` on a GPU, ``unload`` when
  quantised. So on one GPU an 8B guard never sits beside the training policy (docs/performance.md).
* ``force`` (false): run with a guard the refusal rule rejects.
* ``shared_scores`` (a directory): reuse and add to the scores other runs of the same guard left there
  (:mod:`harness.guard.shared_scores`; the suites set it, so their filter rows score each sample once).

Refusal rule (:func:`harness.guard.card.assess_guard`, checked when the run starts, before any weights
load): a guard whose card's held-out recall of unsafe samples is below 0.1, or a bare base model (no
guard card, not a Llama Guard; its recall is unknown and the base SmolLM2 measured 0.0) fails the run
with the reason unless ``force=true``. ``harness filter eval`` never refuses: it is how recall is measured.

The resolved guard, its held-out recall and the verdict are logged and written to
``<run_dir>/filter-lg3/guard.json``; the guard is part of the filter's ``identity`` (score caches of
another guard are not reused on ``--resume``). The guard's weights load on the first sample scored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from harness.guard.card import GuardRefusedError, assess_guard, refusal_message
from harness.guard.defaults import SMOLLM2_GUARD, default_guard
from harness.guard.finetune import train_guard
from harness.guard.placement import GuardPlacement
from harness.guard.scoring import GUARD_CARD, SCORE_MODES, SCORING, GuardScorer, load_guard
from harness.guard.settings import FilterTrainSettings
from harness.guard.threshold_filter import AUTO, ThresholdFilter
from harness.hookspecs import hookimpl
from harness.models import SMOLLM2
from harness.types import ChatSample

log = logging.getLogger(__name__)

GUARD_RECORD = "guard.json"  # in <run_dir>/filter-lg3/: which guard ran and why it was accepted


class LlamaGuardFilter(ThresholdFilter):
    name = "lg3"
    card_file = GUARD_CARD  # where `harness filter train` records the held-out metrics

    def __init__(self, model: str | None = None, threshold: float | str = AUTO, batch_size: int = 8,
                 max_length: int = 1024, score: str = "pair", force: bool = False, shared_scores: str | None = None,
                 device: str = "auto", dtype: str = "auto", quantization: str = "none", between_uses: str = "auto"):
        if score not in SCORE_MODES:
            raise ValueError(f"score must be one of {', '.join(SCORE_MODES)}, got {score!r}")
        if batch_size < 1 or max_length < 64:
            raise ValueError("batch_size must be >= 1 and max_length >= 64")
        if not isinstance(force, bool):
            raise ValueError(f"force must be true or false, got {force!r}")
        self.placement = GuardPlacement(str(device), str(dtype), str(quantization), str(between_uses))
        super().__init__(threshold, shared_scores)
        self.requested = str(model) if model else None  # None: the run's default guard
        self.model = self.requested or str(SMOLLM2_GUARD)
        self.batch_size, self.max_length, self.score_mode, self.force = batch_size, max_length, score, force
        self._scorer: GuardScorer | None = None

    @property
    def identity(self) -> str:
        p = self.placement  # a non-default precision changes the scores; the default keeps older caches valid
        precision = "".join(f" {k}={v}" for k, v in (("dtype", p.dtype), ("quantization", p.quantization))
                            if v not in ("auto", "none"))
        return f"lg3 model={self.model} max_length={self.max_length} score={self.score_mode} scoring={SCORING}{precision}"

    @property
    def scorer(self) -> GuardScorer:
        """The guard, loaded on first use (never the engine's model)."""
        if self._scorer is None:
            guard = load_guard(self.model, self.placement)
            log.info("lg3: guard on %s, %s between uses", guard.held.device, guard.held.idle)
            self._scorer = GuardScorer(guard, self.batch_size, self.max_length, self.score_mode)
        return self._scorer

    def _score(self, samples: list[ChatSample]) -> list[float]:
        return self.scorer.score(samples)

    @hookimpl
    def on_run_start(self, run) -> None:
        """Pick the guard for the run's model (unless one was named), vet it, and record the choice."""
        default = default_guard(run.config.model.name)
        if self.requested is None and self.model != default:
            self.model, self._scorer = default, None
            self.cache.clear()
        assessment = assess_guard(self.model)
        if not assessment.accepted and not self.force:
            raise GuardRefusedError(refusal_message(assessment, default))
        if not assessment.accepted:
            log.warning("lg3: guard %s forced (force=true) although %s", self.model, assessment.reason)
        else:
            log.info("lg3: guard %s (%s; recall from %s)", self.model,
                     "default for " + run.config.model.name if self.requested is None else "named", assessment.source)
        super().on_run_start(run)
        record = {**assessment.as_record(), "default": self.requested is None, "run_model": run.config.model.name,
                  "forced": self.force and not assessment.accepted,
                  "threshold": AUTO if self.auto else self.threshold,  # auto: see calibration.json beside it
                  "placement": asdict(self.placement)}
        out = Path(run.run_dir) / f"filter-{self.name}" / GUARD_RECORD
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1))

    @classmethod
    def train(cls, samples: list[ChatSample], out: Path, base: str | None, settings: FilterTrainSettings) -> dict:
        """Fine-tune a guard adapter on labelled samples; ``--filter-model out`` then loads it."""
        return train_guard(base or SMOLLM2, samples, out, settings)
