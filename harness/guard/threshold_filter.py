"""Base of the score-and-threshold filters: verdicts from a per-run score cache that survives ``--resume``.

``threshold`` is a number in [0, 1] or ``auto``: calibrated at run start on the run's labelled server-held
validation split (:mod:`harness.guard.calibration`); 0.5 outside a run or without enough validation samples.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.data.overlap import digest_file_set
from harness.guard.cache import ScoreCache, check_threshold, threshold_verdict
from harness.guard.calibration import Calibration, calibrate_threshold
from harness.guard.card import TRAIN_PROMPTS
from harness.guard.samples import check_samples
from harness.hookspecs import hookimpl
from harness.types import ChatSample, PromptSet

log = logging.getLogger(__name__)

SCORES_FILE = "scores.json"
AUTO = "auto"
DEFAULT_THRESHOLD = 0.5


class ThresholdFilter:
    """Drops a sample when its score (P(unsafe)) is at or above ``threshold``; subclasses implement ``_score``."""

    name: str
    model: str  # the filter's model directory (or hub id)

    def __init__(self, threshold: float | str):
        self.auto = threshold == AUTO
        self.threshold = DEFAULT_THRESHOLD if self.auto else check_threshold(threshold)
        self.calibration: Calibration | None = None
        self.cache = ScoreCache(self._score)
        self._live_scores: Path | None = None  # the run's current scores file, linked into checkpoints

    def _score(self, samples: list[ChatSample]) -> list[float]:
        raise NotImplementedError

    @property
    def identity(self) -> str:
        """What the scores depend on (a restored cache from another scorer is discarded)."""
        raise NotImplementedError

    def _cache_file(self, directory: Path) -> Path:
        return directory / f"filter-{self.name}" / SCORES_FILE

    @hookimpl
    def pre_local_train(self, client_id, samples, server_round):
        check_samples(samples, f"client {client_id}")
        return threshold_verdict(self.cache.scores(samples), self.threshold)

    @hookimpl
    def on_run_start(self, run) -> None:
        """Subclasses that pick their model at run start call this after picking it."""
        self._live_scores = self._cache_file(run.run_dir)
        labelled = [s for s in run.heldout if s.is_harmful is not None]
        if self.auto and labelled:
            self.calibration = calibrate_threshold(self.cache.scores(labelled), [bool(s.is_harmful) for s in labelled])
            self.threshold = self.calibration.threshold if self.calibration else DEFAULT_THRESHOLD
            log.info("%s: threshold %.3f (%s)", self.name, self.threshold,
                     self.calibration or "default: too few safe or unsafe validation samples")

    @hookimpl
    def declare_prompts(self, run) -> PromptSet | None:
        """The prompts the filter's model was trained on (its ``train_prompts.sha256``), where it stores them."""
        digests = Path(self.model).expanduser() / TRAIN_PROMPTS
        if not digests.is_file():
            return None
        return digest_file_set("guard", f"{self.name} guard {Path(self.model).name}", digests)

    @hookimpl
    def checkpoint_state(self, directory: Path) -> None:
        self.cache.save(self._cache_file(directory), self.identity, live=self._live_scores)

    @hookimpl
    def restore_state(self, directory: Path) -> None:
        self.cache.load(self._cache_file(directory), self.identity)
