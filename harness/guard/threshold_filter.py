"""Base of the score-and-threshold filters: verdicts from a per-run score cache that survives ``--resume``.

``threshold`` is a number in [0, 1] or ``auto``: calibrated on the run's labelled server-held validation split
(:mod:`harness.guard.calibration`) when the first client is filtered, kept in ``filter-<name>/calibration.json``
(run directory and checkpoints, so ``--resume`` keeps it); 0.5 outside a run or without enough validation samples.
``shared_scores`` (a directory, optional): scores shared with other runs of the same scorer
(:mod:`harness.guard.shared_scores`; the suites set it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.data.overlap import digest_file_set
from harness.guard.cache import ScoreCache, check_threshold, threshold_verdict
from harness.guard.calibration import Calibration, calibrate_threshold
from harness.guard.card import TRAIN_PROMPTS
from harness.guard.samples import check_samples
from harness.guard.shared_scores import SharedScores, files_digest, machine_signature
from harness.hookspecs import hookimpl
from harness.types import ChatSample, PromptSet

log = logging.getLogger(__name__)

SCORES_FILE = "scores.json"
CALIBRATION_FILE = "calibration.json"
AUTO = "auto"
DEFAULT_THRESHOLD = 0.5


class ThresholdFilter:
    """Drops a sample when its score (P(unsafe)) is at or above ``threshold``; subclasses implement ``_score``."""

    name: str
    model: str  # the filter's model directory (or hub id)

    def __init__(self, threshold: float | str, shared_scores: str | None = None):
        self.auto = threshold == AUTO
        self.threshold = DEFAULT_THRESHOLD if self.auto else check_threshold(threshold)
        self.calibration: Calibration | None = None
        self.cache = ScoreCache(self._score)
        self._live_scores: Path | None = None  # the run's current scores file, linked into checkpoints
        self._validation: list[ChatSample] | None = None  # labelled validation samples, until calibrated
        self.shared_dir = Path(shared_scores).expanduser() if shared_scores else None
        self._shared: SharedScores | None = None  # opened when the first client is filtered

    def _score(self, samples: list[ChatSample]) -> list[float]:
        raise NotImplementedError

    def scores(self, samples: list[ChatSample]) -> list[float]:
        """Each sample's P(unsafe), the number the threshold is compared with (cached)."""
        return self.cache.scores(samples)

    @property
    def identity(self) -> str:
        """What the scores depend on (a restored cache from another scorer is discarded)."""
        raise NotImplementedError

    @property
    def shared_identity(self) -> str:
        """``identity`` plus what names cannot tell apart: the scorer's files and the machine's arithmetic."""
        return f"{self.identity} files={files_digest(self.model)} {machine_signature()}"

    def _cache_file(self, directory: Path) -> Path:
        return directory / f"filter-{self.name}" / SCORES_FILE

    @hookimpl
    def pre_local_train(self, client_id, samples, server_round):
        check_samples(samples, f"client {client_id}")
        if self.shared_dir is not None and self._shared is None:
            self._shared = SharedScores(self.shared_dir, self.shared_identity)
            reused = self.cache.adopt(self._shared.load())
            log.info("%s: %d scores from %s", self.name, reused, self._shared.path)
        if self._validation is not None:
            self._calibrate(self._validation)
        return threshold_verdict(self.scores(samples), self.threshold)

    @hookimpl
    def on_run_start(self, run) -> None:
        """Keep the labelled validation split for ``threshold=auto``: it is scored when the first client is
        filtered (after a resume's ``restore_state``, and never in a process that filters nothing)."""
        self._live_scores = self._cache_file(run.run_dir)
        labelled = [s for s in run.heldout if s.is_harmful is not None]
        self._validation = labelled if self.auto and labelled else None

    def _calibrate(self, labelled: list[ChatSample]) -> None:
        self.calibration = calibrate_threshold(self.cache.scores(labelled), [bool(s.is_harmful) for s in labelled])
        self.threshold = self.calibration.threshold if self.calibration else DEFAULT_THRESHOLD
        self._validation = None
        log.info("%s: threshold %.3f (%s)", self.name, self.threshold,
                 self.calibration or "default: too few safe or unsafe validation samples")
        if self.calibration is not None and self.calibration.at_chance:
            c = self.calibration
            log.warning("%s: the filter ranks the run's %d validation samples no better than chance (AUC %.2f, 95 %% "
                        "interval %.2f-%.2f); its threshold %.3f drops %.0f %% of them, red or not", self.name,
                        c.n_safe + c.n_unsafe, c.auc, c.auc_low, c.auc_high, c.threshold, 100 * c.dropped)
        if self._live_scores is not None:
            self._write_calibration(self._live_scores.parent)

    def _write_calibration(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        record = {"threshold": self.threshold, "calibration": self.calibration.as_record() if self.calibration else None}
        (directory / CALIBRATION_FILE).write_text(json.dumps(record, indent=1))

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
        if self._shared is not None:
            self._shared.add(self.cache.as_dict())
        if self.auto and self._validation is None:  # calibrated: the checkpoint keeps the threshold
            self._write_calibration(self._cache_file(directory).parent)

    @hookimpl
    def restore_state(self, directory: Path) -> None:
        self.cache.load(self._cache_file(directory), self.identity)
        saved = self._cache_file(directory).parent / CALIBRATION_FILE
        if self.auto and saved.is_file():
            record = json.loads(saved.read_text())
            self.threshold = record["threshold"]
            self.calibration = Calibration(**record["calibration"]) if record["calibration"] else None
            self._validation = None
