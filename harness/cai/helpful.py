"""CAI's helpful mix (``--align-opt helpful=...``, docs/cai.md): benign prompts with the base model's own answers.

CAI on refusals alone teaches refuse-all. Bai et al. (2022, §3) mix helpfulness samples into CAI's supervised
stage, and Ye et al. (2024, arXiv 2406.10630) fine-tune the aggregated model on aligned *and* normal data. Here the
pretrained base answers the benign prompts once (greedy, cut after the last full sentence; the raw answers are
cached per model, prompts and length); empty answers and refusals (the strict rule of :mod:`harness.evals.refusal`)
are dropped. Each kept answer is an SFT row (prompt -> answer) and a DPO pair (chosen = the answer, rejected = one
of the refusals CAI itself trains on), and :func:`mix` repeats the smaller side so that a given share of the rows
is helpful.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from harness.cai.build import model_fingerprint
from harness.cai.dataset import CaiDataError, PreferencePair
from harness.cai.helpful_prompts import DEMO_PROMPTS
from harness.cai.prompts import load_prompts
from harness.data.demo import demo_cai_pairs
from harness.evals.refusal import get_rule
from harness.model_handle import GlobalModel
from harness.models import cache_dir
from harness.safe_base.tune import full_sentences

DEMO = "demo"
REFUSAL_RULE = "strict"
T = TypeVar("T")


def load_helpful_prompts(source: str) -> list[str]:
    """``demo`` (the project's requests, :mod:`harness.cai.helpful_prompts`) or a prompt file read by
    :func:`harness.cai.prompts.load_prompts`."""
    if source == DEMO:
        return list(DEMO_PROMPTS)
    if not Path(source).is_file():
        raise CaiDataError(f"helpful={source!r} is neither 'demo' nor an existing prompt file (.txt, one prompt a "
                           "line; .jsonl with 'prompt' fields; .csv with a 'prompt' column)")
    return load_prompts(source)


@dataclass(frozen=True)
class HelpfulAnswers:
    """The base model's own answers: ``kept`` (prompt, answer) of the ``asked`` benign prompts."""

    asked: int
    kept: list[tuple[str, str]]


def answers_cache(model: GlobalModel, prompts: Sequence[str], max_new_tokens: int) -> Path:
    """Where the base model's raw answers to ``prompts`` are kept: ``$HARNESS_CACHE/cai-helpful/<key>.json``."""
    payload = json.dumps([model_fingerprint(model, base_only=True), list(prompts), max_new_tokens])
    return cache_dir() / "cai-helpful" / f"{hashlib.sha256(payload.encode()).hexdigest()[:16]}.json"


def own_answers(model: GlobalModel, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16) -> HelpfulAnswers:
    """Greedy answers of the pretrained base (adapter off; cached, :func:`answers_cache`); empty ones and refusals
    (strict rule) dropped."""
    cache = answers_cache(model, prompts, max_new_tokens)
    if cache.is_file():
        texts = json.loads(cache.read_text(encoding="utf-8"))
    else:
        with model.base_only():
            texts = model.generate([model.chat_prompt(p) for p in prompts], max_new_tokens, batch_size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial")
        partial.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, cache)
    rule = get_rule(REFUSAL_RULE)
    kept = [(p, answer) for p, text in zip(prompts, texts) if (answer := full_sentences(text)) and not rule.is_refusal(answer)]
    return HelpfulAnswers(len(prompts), kept)


def refusals_of(pairs: Sequence[PreferencePair]) -> list[str]:
    """The distinct chosen answers of CAI's pairs that refuse (strict rule); the demo pairs' refusals if none does."""
    rule = get_rule(REFUSAL_RULE)
    found = [p.chosen for p in pairs if rule.is_refusal(p.chosen)] or [chosen for _, chosen, _ in demo_cai_pairs()]
    return list(dict.fromkeys(found))


def helpful_pairs(answers: HelpfulAnswers, refusals: Sequence[str]) -> list[PreferencePair]:
    """(prompt, chosen = own answer, rejected = a refusal), the refusals used in turn."""
    return [PreferencePair(p, chosen=a, rejected=refusals[i % len(refusals)]) for i, (p, a) in enumerate(answers.kept)]


def repeat(rows: list[T], n: int, rng: np.random.Generator) -> list[T]:
    """``n`` rows: whole copies of ``rows``, then a seeded sample of the rest (without replacement)."""
    copies, rest = divmod(n, len(rows))
    return rows * copies + [rows[i] for i in sorted(rng.choice(len(rows), rest, replace=False))]


def mix(cai: list[T], helpful: list[T], share: float, seed: int) -> tuple[list[T], list[T]]:
    """(CAI rows, helpful rows) with the smaller side repeated so that ``share`` of all rows are helpful
    (up to rounding); no row is dropped."""
    if not cai or not helpful or not 0 < share < 1:
        raise ValueError(f"mix needs CAI and helpful rows and a share in (0, 1); got {len(cai)}, {len(helpful)}, {share}")
    ratio, rng = share / (1 - share), np.random.default_rng(seed)  # helpful rows per CAI row
    if len(helpful) >= ratio * len(cai):
        return repeat(cai, round(len(helpful) / ratio), rng), helpful
    return cai, repeat(helpful, round(ratio * len(cai)), rng)
