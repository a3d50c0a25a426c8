"""What a guard directory says about itself, and whether a run may filter with it.

A guard trained by ``harness filter train`` is a directory with its card (``guard.json`` for lg3) holding
the training settings and the *held-out* detection metrics (``held_out``: recall, precision, ... on the
test split of its data), and ``train_prompts.sha256``: the digest (:func:`harness.data.normalize.prompt_digest`)
of every distinct training prompt, one per line, sorted, so that evaluation data can be checked for overlap
without the prompts themselves being stored.

The refusal rule (:func:`assess_guard`): a run refuses a guard whose held-out recall of unsafe samples is
below :data:`MIN_RECALL`, or that has no card and is not a published Llama Guard (a bare base model, whose
recall is unknown; the base SmolLM2 measured 0.0, ``plugins/filters/guards/smollm2-135m-lg3/table2.json``),
unless the user forces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.data.normalize import prompt_digest
from harness.data.overlap import DIGEST_FILE
from harness.models import ModelLoadError

GUARD_CARD = "guard.json"  # written by `harness filter train` (lg3) next to the LoRA adapter
TRAIN_PROMPTS = DIGEST_FILE
HELD_OUT = "held_out"  # the card's entry of held-out detection metrics
MIN_RECALL = 0.1
"""Held-out recall of unsafe samples below which a run refuses a guard (unless forced): a guard that misses
more than 9 in 10 unsafe replies drops (almost) nothing and only costs time."""


class GuardRefusedError(ModelLoadError):
    """The guard is not fit to filter a run (near-zero or unknown recall); ``force=true`` overrides."""


def write_train_prompts(out: Path, prompts: Iterable[str]) -> int:
    """Write the sorted, distinct digests of ``prompts`` to ``out/train_prompts.sha256``; return their count."""
    digests = sorted({prompt_digest(p) for p in prompts})
    out.mkdir(parents=True, exist_ok=True)
    (out / TRAIN_PROMPTS).write_text("".join(d + "\n" for d in digests))
    return len(digests)


def record_held_out(card_path: Path, metrics: dict) -> None:
    """Merge held-out detection ``metrics`` into the card at ``card_path`` (a JSON object)."""
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card[HELD_OUT] = metrics
    card_path.write_text(json.dumps(card, indent=2))


def is_llama_guard(model: str) -> bool:
    """A published Llama Guard (hub id such as ``meta-llama/Llama-Guard-3-1B``, or a local copy so named)."""
    return "llama-guard" in Path(model).name.lower()


@dataclass(frozen=True)
class GuardAssessment:
    """What is known about a guard's recall, and whether a run accepts it."""

    model: str
    recall: float | None  # held-out recall of unsafe samples; None when unknown
    source: str  # where the recall (or its absence) comes from
    accepted: bool
    reason: str

    def as_record(self) -> dict:
        return {"model": self.model, "held_out_recall": self.recall, "recall_source": self.source,
                "accepted": self.accepted, "reason": self.reason, "min_recall": MIN_RECALL}


def assess_guard(model: str) -> GuardAssessment:
    """Whether a run may filter with ``model`` (cheap: reads the card, loads no weights)."""
    card_path = Path(model).expanduser() / GUARD_CARD
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{card_path} is not valid JSON ({exc})") from exc
        held_out = card.get(HELD_OUT) or {}
        recall = held_out.get("recall")
        if recall is None:
            return GuardAssessment(model, None, f"{card_path} (no held-out metrics)", True,
                                   "trained guard without held-out metrics; its recall is unknown")
        recall = float(recall)
        where = f"{card_path} held_out (n={int(held_out.get('n', 0))})"
        if recall < MIN_RECALL:
            return GuardAssessment(model, recall, where, False,
                                   f"its held-out recall of unsafe samples is {recall:.3f} < {MIN_RECALL}")
        return GuardAssessment(model, recall, where, True, f"held-out recall {recall:.3f} >= {MIN_RECALL}")
    if is_llama_guard(model):
        return GuardAssessment(model, None, "published Llama Guard 3", True, "a published Llama Guard")
    return GuardAssessment(
        model, None, "no guard card", False,
        f"it is a base model, not a guard (no {GUARD_CARD} with held-out metrics, not a Llama Guard): its recall "
        "is unknown, and a base model does not answer 'unsafe' (the base SmolLM2 has held-out recall 0.0)",
    )


def refusal_message(assessment: GuardAssessment, default_model: str) -> str:
    return (f"lg3 refuses guard {assessment.model!r}: {assessment.reason}. A run filtered by it would drop "
            f"(almost) nothing. Use a trained guard (the default for this run's model is {default_model}; "
            f"`harness filter train` makes one) or force it with --filter-opt force=true.")
