"""One CAI alignment pass per round on the global adapter: SFT on revisions, then DPO (revision > red)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from harness.cai.build import BuildSettings, build_cai_dataset
from harness.cai.constitution import load_constitution
from harness.cai.dataset import CaiDataError, CaiDataset
from harness.cai.prompts import load_prompts
from harness.cai.train import PreferenceData, cycle, dpo_train, reference_logps, sft_train, tokenize_pairs
from harness.model_handle import GlobalModel
from harness.models import cache_dir
from harness.training import TokenizedSamples, tokenize_samples
from harness.types import AlignResult

log = logging.getLogger(__name__)


@dataclass
class CaiSettings:
    """Options of the CAI plugins (``--align-opt KEY=VALUE``)."""

    sft_fraction: float = 0.5  # share of a fixed iteration budget spent on SFT (the rest is DPO)
    lr: float = 1e-4
    beta: float = 0.1
    batch_size: int = 4
    data: str | None = None  # a finished `harness cai build` directory; None: build once from `prompts`
    prompts: str = "demo"  # red-teaming prompts for the default build
    constitution: str | None = None  # constitution JSON for the default build; None: the project's own
    max_new_tokens: int = 64  # per turn, for the default build
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.sft_fraction <= 1.0:
            raise ValueError(f"sft_fraction must be in [0, 1], got {self.sft_fraction}")
        if self.lr <= 0 or self.beta <= 0 or self.batch_size < 1:
            raise ValueError(f"lr and beta must be > 0 and batch_size >= 1 (got {self.lr}, {self.beta}, {self.batch_size})")


@dataclass
class Schedule:
    sft_steps: int
    dpo_steps: int


def split_iterations(iterations: int, sft_fraction: float) -> Schedule:
    """A fixed budget: round(iterations * sft_fraction) SFT steps, the rest DPO."""
    sft = round(iterations * sft_fraction)
    return Schedule(sft, iterations - sft)


def epoch_schedule(n_sft: int, n_pairs: int, batch_size: int) -> Schedule:
    """One full pass over the SFT set, then one over the DPO pairs."""
    return Schedule(math.ceil(n_sft / batch_size), math.ceil(n_pairs / batch_size))


class CaiAligner:
    """SFT then DPO on the resident global adapter; ``iterations=None`` runs one epoch of each per round."""

    def __init__(self, iterations: int | None, settings: CaiSettings):
        if iterations is not None and iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.iterations = iterations
        self.settings = settings
        self._dataset: CaiDataset | None = None
        self._sft: TokenizedSamples | None = None
        self._pairs: PreferenceData | None = None
        self._orders: dict[str, list[int]] = {}
        self._cursors = {"sft": 0, "dpo": 0}

    def dataset(self, model: GlobalModel) -> CaiDataset:
        """The CAI set: ``data`` if given, else built once (pretrained base, cached on disk) from ``prompts``."""
        if self._dataset is None:
            s = self.settings
            if s.data is not None:
                self._dataset = CaiDataset.load(s.data)
            else:
                root = cache_dir() / "cai"
                log.info("building the default CAI set from %s prompts into %s (cached)", s.prompts, root)
                self._dataset = build_cai_dataset(
                    model, load_prompts(s.prompts), load_constitution(s.constitution), root,
                    BuildSettings(max_new_tokens=s.max_new_tokens, base_only=True),
                )
            if not self._dataset.dpo_pairs():
                raise CaiDataError(
                    f"the CAI set {self._dataset.path} has no usable records (a non-empty revision that differs "
                    f"from the red response); build it with a model that follows instructions"
                )
            self._sft = tokenize_samples(model.tokenizer, self._dataset.sft_samples(), model.max_length)
            self._pairs = tokenize_pairs(model.tokenizer, self._dataset.dpo_pairs(), model.max_length)
            rng = np.random.default_rng(s.seed)
            self._orders = {"sft": rng.permutation(len(self._sft)).tolist(), "dpo": rng.permutation(self._pairs.n).tolist()}
        return self._dataset

    def schedule(self) -> Schedule:
        if self.iterations is None:
            return epoch_schedule(len(self._sft), self._pairs.n, self.settings.batch_size)
        return split_iterations(self.iterations, self.settings.sft_fraction)

    def align(self, model: GlobalModel) -> AlignResult:
        """Align the adapter loaded in ``model`` in place; return it with this round's metrics."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        if self._dataset is None:
            self.dataset(model)
            metrics["build_seconds"] = time.perf_counter() - start
        s, plan = self.settings, self.schedule()
        if self.iterations is None:  # each epoch starts at the beginning of its data
            self._cursors = {"sft": 0, "dpo": 0}
        visited = sorted(set(cycle(self._orders["dpo"], self._cursors["dpo"], plan.dpo_steps * s.batch_size)))
        reference = reference_logps(model, self._pairs, visited, s.batch_size)  # current global model, pre-update
        if plan.sft_steps:
            info, self._cursors["sft"] = sft_train(
                model, self._sft, self._orders["sft"], self._cursors["sft"], plan.sft_steps, s.batch_size, s.lr
            )
            metrics["sft_loss"] = info.mean_loss
        if plan.dpo_steps:
            dpo, self._cursors["dpo"] = dpo_train(
                model, self._pairs, self._orders["dpo"], self._cursors["dpo"], plan.dpo_steps, s.batch_size, s.lr,
                s.beta, reference,
            )
            metrics.update(dpo_loss=dpo.mean_loss, reward_margin=dpo.reward_margin, reward_accuracy=dpo.reward_accuracy)
        metrics.update(
            sft_steps=plan.sft_steps, dpo_steps=plan.dpo_steps, pairs=self._pairs.n,
            seconds=time.perf_counter() - start,
        )
        return AlignResult(state=model.adapter_state(), metrics=metrics)
