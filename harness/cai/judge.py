"""Which self-revision pairs to train on: only those whose revision is an improvement on the red response.

A pair (prompt, red, revision) is kept when the revision differs from the red response
(normalised text, :func:`harness.data.normalize.normalize_prompt`) and a judge calls it safer:

``refusal`` (default)
    The ``strict`` refusal rule of :mod:`harness.evals.refusal`: kept when the revision is a
    refusal and the red response is not. Deterministic, no model to load, nothing to download.
    Blind to revisions that are safe without refusing (CAI's "harmless, non-evasive" answers)
    and fooled by "I'm sorry to hear that. Here is how...".
``guard``
    A Llama-Guard-format guard scores P(unsafe) of (prompt, red) and of (prompt, revision); the
    pair is kept when ``P(red) - P(revision) >= margin``. The guard (option ``guard``) defaults to
    :func:`harness.guard.defaults.default_guard` for the run's model: the shipped SmolLM2 guard for
    ``smollm2-135m``/``tiny-random`` (weak: on the clear-cut demo pairs, refusal vs templated
    compliance, its P(unsafe) drops by only 0.10 on average and by >= 0.1 for 7 of 20), the gated
    Llama Guard 3 1B otherwise. The better judge where a real Llama Guard is at hand.
``none``
    Every changed revision is kept (the behaviour before the judge; not for small models).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.cai.dataset import PreferencePair, differs
from harness.data.normalize import normalize_prompt

log = logging.getLogger(__name__)

JUDGES = ("guard", "refusal")
Judge = Callable[[Sequence[PreferencePair]], list[bool]]
"""A judge: for each (prompt, chosen = revision, rejected = red) pair, whether the revision is safer."""


@dataclass
class KeptPairs:
    pairs: list[PreferencePair]
    built: int  # candidate pairs before any check
    unchanged: int  # revision empty or equal to the red response (normalised)
    not_safer: int  # the judge did not call the revision safer


def keep_improvements(candidates: Sequence[PreferencePair], judge: Judge) -> KeptPairs:
    """The candidates whose chosen answer is non-empty, differs from the rejected one and is judged safer."""
    changed = [p for p in candidates if normalize_prompt(p.chosen) and differs(p.chosen, p.rejected)]
    verdicts = judge(changed) if changed else []
    if len(verdicts) != len(changed):
        raise ValueError(f"the judge returned {len(verdicts)} verdicts for {len(changed)} pairs")
    kept = [p for p, ok in zip(changed, verdicts) if ok]
    return KeptPairs(kept, len(candidates), len(candidates) - len(changed), len(changed) - len(kept))


def refusal_judge(rule: str = "strict") -> Judge:
    from harness.evals.refusal import get_rule

    matcher = get_rule(rule)
    return lambda pairs: [matcher.is_refusal(p.chosen) and not matcher.is_refusal(p.rejected) for p in pairs]


def guard_judge(guard: str, margin: float, batch_size: int = 8) -> Judge:
    """P(unsafe) of the red response minus that of the revision must be >= ``margin`` (guard loaded on first use,
    off the GPU between uses as :class:`harness.guard.placement.GuardPlacement`'s ``auto`` says, so it never
    sits beside the SFT and DPO steps that follow)."""
    from harness.guard.placement import GuardPlacement
    from harness.guard.scoring import GuardScorer, load_guard
    from harness.types import ChatSample

    state: dict = {}

    def judge(pairs: Sequence[PreferencePair]) -> list[bool]:
        if "scorer" not in state:
            log.info("loading the CAI judge guard %s", guard)
            state["scorer"] = GuardScorer(load_guard(guard, GuardPlacement()), batch_size)
        scores = state["scorer"].score(
            [ChatSample(p.prompt, p.rejected) for p in pairs] + [ChatSample(p.prompt, p.chosen) for p in pairs]
        )
        red, revision = scores[: len(pairs)], scores[len(pairs) :]
        state["last_scores"] = list(zip(red, revision))
        return [r - v >= margin for r, v in zip(red, revision)]

    judge.state = state  # type: ignore[attr-defined]  # the last (red, revision) scores, for reports
    return judge


def make_judge(name: str, guard: str, margin: float) -> Judge:
    if name == "guard":
        return guard_judge(guard, margin)
    if name == "refusal":
        return refusal_judge()
    raise ValueError(f"judge must be one of {', '.join(JUDGES)}, got {name!r}")
