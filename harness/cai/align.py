"""One CAI alignment pass per round on the global adapter: SFT on the chosen answers, then DPO (chosen > rejected).

The pairs are a prebuilt preference set (``pairs``) or the model's own self-revisions (``data``,
or built once from ``prompts``) kept only where the judge calls the revision an improvement on
the red response (:mod:`harness.cai.judge`). The DPO reference is the model after this round's SFT. With
``helpful`` the base model's own answers to benign prompts are mixed in (:mod:`harness.cai.helpful`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from harness.cai.build import BuildSettings, build_cai_dataset
from harness.cai.constitution import load_constitution
from harness.cai.dataset import CaiDataError, CaiDataset, PreferencePair
from harness.cai.helpful import HelpfulAnswers, helpful_pairs, load_helpful_prompts, mix, own_answers, refusals_of
from harness.cai.judge import JUDGES, Judge, KeptPairs, keep_improvements, make_judge
from harness.cai.pairs import DEMO, load_pairs
from harness.cai.prompts import load_prompts
from harness.cai.train import PreferenceData, cycle, dpo_train, reference_logps, sft_train, tokenize_pairs
from harness.guard.defaults import default_guard
from harness.model_handle import GlobalModel
from harness.models import SMOLLM2, SMOLLM2_SAFE, TINY_RANDOM, cache_dir
from harness.training import TokenizedSamples, tokenize_samples
from harness.types import AlignResult, ChatSample

log = logging.getLogger(__name__)


def model_name_of(model: GlobalModel | None, name: str | None = None) -> str:
    """The run's model name for :func:`default_guard`: ``name`` if known, else guessed from the checkpoint path."""
    if name:
        return name
    path = str(getattr(getattr(getattr(model, "model", None), "config", None), "_name_or_path", "") or "")
    if not path or "smollm2-135m" in path.lower():
        return SMOLLM2  # tiny-random (no path) and the embedded SmolLM2 both get the shipped guard
    return path


AUTO = "auto"
SMALL_MODELS = (SMOLLM2, SMOLLM2_SAFE, TINY_RANDOM)
"""Models whose own critique/revision turns are not refusals (0 of 16 kept at 135M, docs/cai.md): ``pairs='auto'``
gives them the project's templated demo pairs instead."""
SOURCE_CODES = {"prompts": 0, "data": 1, "file": 2, "demo": 3}
"""``align/pairs_source``: where the run's pairs come from (MLflow metrics are numbers)."""


@dataclass
class CaiSettings:
    """Options of the CAI plugins (``--align-opt KEY=VALUE``)."""

    sft_fraction: float = 0.5  # share of a fixed iteration budget spent on SFT (the rest is DPO)
    lr: float = 1e-4
    beta: float = 0.1
    batch_size: int = 4
    pairs: str | None = AUTO  # 'demo', a JSONL of {prompt, chosen, rejected}, None/'none' (self-revisions), or
    # 'auto': 'demo' for models too small to revise themselves (SMALL_MODELS), unless self-revision inputs
    # (data, prompts, constitution) are given; else none
    data: str | None = None  # a finished `harness cai build` directory; None: build once from `prompts`
    prompts: str = "demo"  # red-teaming prompts for the default build
    constitution: str | None = None  # constitution JSON for the default build; None: the project's own
    max_new_tokens: int = 64  # per turn, for the default build
    judge: str = "refusal"  # which self-revision pairs are improvements: refusal | guard | none (harness.cai.judge)
    judge_margin: float = 0.1  # guard judge: keep when P_unsafe(red) - P_unsafe(revision) >= this
    guard: str | None = None  # guard judge's model; None: harness.guard.defaults.default_guard(run's model)
    seed: int = 0
    helpful: str | None = None  # benign prompts ('demo' or a file) whose own answers are mixed in; None/'none': off
    helpful_share: float = 0.5  # share of the SFT rows and DPO pairs that are helpful when `helpful` is given

    def __post_init__(self):
        if not 0.0 <= self.sft_fraction <= 1.0:
            raise ValueError(f"sft_fraction must be in [0, 1], got {self.sft_fraction}")
        if self.lr <= 0 or self.beta <= 0 or self.batch_size < 1:
            raise ValueError(f"lr and beta must be > 0 and batch_size >= 1 (got {self.lr}, {self.beta}, {self.batch_size})")
        if self.judge not in JUDGES + ("none",):
            raise ValueError(f"judge must be one of {', '.join(JUDGES)}, none; got {self.judge!r}")
        if not 0.0 <= self.judge_margin < 1.0:
            raise ValueError(f"judge_margin must be in [0, 1), got {self.judge_margin}")
        if self.pairs == "none":
            self.pairs = None
        if self.helpful == "none":
            self.helpful = None
        share = self.helpful_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
            raise ValueError(f"helpful_share must be a number in (0, 1) (the share of helpful rows), got {share!r}")
        if self.pairs not in (None, AUTO) and self.data is not None:
            raise ValueError("give pairs (a prebuilt preference set) or data (a CAI build directory), not both")

    def resolved(self, model_name: str | None) -> CaiSettings:
        """These settings with ``pairs='auto'`` decided for a run on ``model_name``."""
        if self.pairs != AUTO:
            return self
        small = model_name in SMALL_MODELS and not self.asks_for_self_revisions
        return replace(self, pairs=DEMO if small else None)

    @property
    def asks_for_self_revisions(self) -> bool:
        """A CAI build directory, red-teaming prompts or a constitution was given: the user wants self-revisions."""
        return self.data is not None or self.prompts != "demo" or self.constitution is not None

    @property
    def source(self) -> str:
        if self.pairs == AUTO:
            raise RuntimeError("CaiSettings.source before pairs='auto' was resolved")
        if self.pairs is not None:
            return "demo" if self.pairs == DEMO else "file"
        return "data" if self.data is not None else "prompts"


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


def no_pairs_message(kept: KeptPairs, where, s: CaiSettings) -> str:
    """Why no self-revision pair was kept, and fixes that work in a new run (never ``--resume``)."""
    reasons = []
    if kept.unchanged:
        reasons.append(f"{kept.unchanged} revision(s) are empty or repeat the red response")
    if kept.not_safer:
        margin = f" with judge_margin={s.judge_margin}" if s.judge == "guard" else ""
        reasons.append(f"{kept.not_safer} are not judged safer than the red response by judge={s.judge}{margin}")
    fixes = [
        "a prebuilt preference set: --align-opt pairs=FILE (JSONL of prompt/chosen/rejected, e.g. refusals by a "
        "stronger or safety-tuned model; pairs=demo for the project's templated demo set)",
        "a set built by a stronger model: --align-opt data=DIR (from `harness cai build --model ...`)",
    ]
    if kept.not_safer:
        fixes.append("another judge: --align-opt judge=refusal" if s.judge == "guard" else
                     "another judge: --align-opt judge=guard (a P(unsafe) drop instead of a refusal)")
    return (
        f"no usable CAI pairs: of {kept.built} self-revision(s) in {where}, {' and '.join(reasons) or 'none are left'}; "
        f"this model's revisions are not improvements to train on (small models echo or comment on their red answer). "
        f"Start a new run with " + ", or ".join(fixes)
    )


class CaiAligner:
    """SFT then DPO on the resident global adapter; ``iterations=None`` runs one epoch of each per round.

    ``judge`` replaces the judge named in the settings (tests inject stubs); ``model_name`` (set by
    the plugin from the run's config) picks the default guard.
    """

    def __init__(self, iterations: int | None, settings: CaiSettings, judge: Judge | None = None):
        if iterations is not None and iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.iterations = iterations
        self.settings = settings
        self.judge = judge
        self.model_name: str | None = None
        self.kept: KeptPairs | None = None
        self.judge_seconds = 0.0
        self._inputs_ready = False
        self._helpful = load_helpful_prompts(settings.helpful) if settings.helpful is not None else []
        self.helpful: HelpfulAnswers | None = None
        self.helpful_rows = 0
        self.training_pairs: list[PreferencePair] = []
        if settings.pairs != AUTO or settings.asks_for_self_revisions:  # a bad file stops the run before it starts
            self.start(None)
        self._sft: TokenizedSamples | None = None
        self._pairs: PreferenceData | None = None
        self._orders: dict[str, list[int]] = {}
        self.cursors = {"sft": 0, "dpo": 0}

    def start(self, model_name: str | None) -> None:
        """Decide ``pairs='auto'`` for the run's model and read (and check) the inputs, once."""
        self.model_name = model_name or self.model_name
        if self._inputs_ready:
            return
        self.settings = s = self.settings.resolved(self.model_name)
        self._prebuilt = load_pairs(s.pairs) if s.pairs is not None else None
        self._built = CaiDataset.load(s.data) if s.data is not None else None
        self._prompts = self._principles = None
        if s.pairs is None and s.data is None:
            self._prompts, self._principles = load_prompts(s.prompts), load_constitution(s.constitution)
        self._inputs_ready = True

    def training_prompts(self) -> list[str]:
        """The prompts the aligner trains on (the pairs', the build's, or the red-teaming prompts), then the helpful ones."""
        self.start(None)
        if self._prebuilt is not None:
            cai = [p.prompt for p in self._prebuilt]
        elif self._built is not None:
            cai = [r.prompt for r in self._built.records]
        else:
            cai = list(self._prompts)
        return cai + self._helpful

    def dataset(self, model: GlobalModel) -> KeptPairs:
        """The training pairs (prepared once): ``pairs`` as given, or self-revisions (``data``, or built
        once from ``prompts`` with the pretrained base, cached on disk) that the judge calls improvements."""
        if self.kept is None:
            self.start(None)
            s = self.settings
            if self._prebuilt is not None:
                kept = KeptPairs(self._prebuilt, len(self._prebuilt), 0, 0)
                log.info("CAI pairs: %d prebuilt pairs from %s", kept.built, s.pairs)
            else:
                kept = self._judged(self._self_revisions(model), model)
            self.kept = kept
            self.training_pairs = self._with_helpful(model, kept.pairs) if s.helpful is not None else kept.pairs
            self._sft = tokenize_samples(
                model.tokenizer, [ChatSample(p.prompt, p.chosen, False, "cai", "cai") for p in self.training_pairs],
                model.max_length,
            )
            self._pairs = tokenize_pairs(model.tokenizer, self.training_pairs, model.max_length)
            rng = np.random.default_rng(s.seed)
            self._orders = {"sft": rng.permutation(len(self._sft)).tolist(), "dpo": rng.permutation(self._pairs.n).tolist()}
        return self.kept

    def _with_helpful(self, model: GlobalModel, pairs: list[PreferencePair]) -> list[PreferencePair]:
        """``pairs`` mixed with the base model's own answers to the helpful prompts (SFT rows and DPO pairs alike)."""
        s = self.settings
        self.helpful = answers = own_answers(model, self._helpful, s.max_new_tokens)
        log.info("CAI helpful mix: the base model answered %d benign prompts (helpful=%s), kept %d (not refusals, not "
                 "empty)", answers.asked, s.helpful, len(answers.kept))
        if not answers.kept:
            raise CaiDataError(f"helpful={s.helpful!r}: the base model refused or left empty all {answers.asked} benign "
                               "prompts, so there is nothing to mix in; start a new run with other prompts or without helpful")
        cai, helpful = mix(pairs, helpful_pairs(answers, refusals_of(pairs)), s.helpful_share, s.seed)
        self.helpful_rows = len(helpful)
        log.info("CAI helpful mix: %d CAI + %d helpful rows (share %.2f)", len(cai), len(helpful),
                 len(helpful) / (len(cai) + len(helpful)))
        return cai + helpful

    def _self_revisions(self, model: GlobalModel) -> CaiDataset:
        s = self.settings
        if self._built is not None:
            return self._built
        root = cache_dir() / "cai"
        log.info("building the default CAI set from %s prompts into %s (cached)", s.prompts, root)
        return build_cai_dataset(
            model, self._prompts, self._principles, root,
            BuildSettings(max_new_tokens=s.max_new_tokens, base_only=True),
        )

    def judge_for(self, model: GlobalModel) -> Judge:
        s = self.settings
        if self.judge is not None:
            return self.judge
        if s.judge == "none":
            return lambda pairs: [True] * len(pairs)
        return make_judge(s.judge, s.guard or default_guard(model_name_of(model, self.model_name)), s.judge_margin)

    def _judged(self, data: CaiDataset, model: GlobalModel) -> KeptPairs:
        s = self.settings
        candidates = [PreferencePair(r.prompt, chosen=r.revision, rejected=r.red) for r in data.records]
        t = time.perf_counter()
        kept = keep_improvements(candidates, self.judge_for(model))
        self.judge_seconds = time.perf_counter() - t
        where = data.path or "the CAI set"
        log.info("CAI pairs from %s: %d built, %d kept (%d unchanged revisions, %d not judged safer by %s)",
                 where, kept.built, len(kept.pairs), kept.unchanged, kept.not_safer, s.judge)
        if not kept.pairs:
            raise CaiDataError(no_pairs_message(kept, where, s))
        return kept

    def schedule(self) -> Schedule:
        if self.iterations is None:
            return epoch_schedule(len(self._sft), self._pairs.n, self.settings.batch_size)
        return split_iterations(self.iterations, self.settings.sft_fraction)

    def align(self, model: GlobalModel) -> AlignResult:
        """Align the adapter loaded in ``model`` in place; return it with this round's metrics."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        if self.kept is None:
            self.dataset(model)
            metrics.update(build_seconds=time.perf_counter() - start, judge_seconds=self.judge_seconds)
        s, plan = self.settings, self.schedule()
        if self.iterations is None:  # each epoch starts at the beginning of its data
            self.cursors = {"sft": 0, "dpo": 0}
        if plan.sft_steps:
            t = time.perf_counter()
            info, self.cursors["sft"] = sft_train(
                model, self._sft, self._orders["sft"], self.cursors["sft"], plan.sft_steps, s.batch_size, s.lr
            )
            metrics.update(sft_loss=info.mean_loss, sft_seconds=time.perf_counter() - t)
        if plan.dpo_steps:
            t = time.perf_counter()
            visited = sorted(set(cycle(self._orders["dpo"], self.cursors["dpo"], plan.dpo_steps * s.batch_size)))
            reference = reference_logps(model, self._pairs, visited, s.batch_size)  # this round's model after its SFT
            metrics["reference_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            dpo, self.cursors["dpo"] = dpo_train(
                model, self._pairs, self._orders["dpo"], self.cursors["dpo"], plan.dpo_steps, s.batch_size, s.lr,
                s.beta, reference,
            )
            metrics.update(dpo_loss=dpo.mean_loss, reward_margin=dpo.reward_margin, reward_accuracy=dpo.reward_accuracy,
                           dpo_seconds=time.perf_counter() - t)
        metrics.update(
            sft_steps=plan.sft_steps, dpo_steps=plan.dpo_steps, pairs=self._pairs.n,
            pairs_built=self.kept.built, pairs_kept=len(self.kept.pairs), pairs_source=SOURCE_CODES[s.source],
            seconds=time.perf_counter() - start,
        )
        if self.helpful is not None:
            metrics.update(helpful_prompts=self.helpful.asked, helpful_kept=len(self.helpful.kept),
                           helpful_share=self.helpful_rows / len(self.training_pairs))
        return AlignResult(state=model.adapter_state(), metrics=metrics)
