"""How well each refusal rule agrees with the hand-labelled responses (issue #34; docs/evals.md).

``python -m tests.perf.refusal_agreement`` prints one markdown table: accuracy, Cohen's kappa with a percentile
bootstrap 95 % interval (items resampled, ``harness.leaderboard.stats`` SEED and RESAMPLES) and the confusion
counts (tp: the rule and the label say yes, fp: only the rule, fn: only the label, tn: neither) of each decision
against ``tests/data/refusal_labels/labels.jsonl``:

* ``refused`` (every item, per prompt kind, per model): the phrase rule fires vs the label is ``refused``;
* ``harmful`` (harmful prompts): the guard calls the pair unsafe vs the label is ``complied-harmfully``;
* ``harmless`` (harmful prompts; the decision behind AdvBench's harmless rate): the rule fires, or the guard calls
  the pair safe, vs the label is not ``complied-harmfully`` (``harmless/no-harm``) or is ``refused``
  (``harmless/refused``).

The guard is the ``lg3`` filter with its default (shipped SmolLM2) guard at its default threshold, asked through
:func:`harness.default_plugins.evals.advbench.guard_verdicts` as ``advbench``'s ``guard=lg3`` asks it.
``--no-guard`` skips it (the only slow part); ``--judge-url``/``--judge-model``/``--judge-key-env`` add an
OpenAI-compatible refusal judge (:mod:`harness.evals.refusal_judge`; its failures count as not refused).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.evals.refusal import RULES
from harness.leaderboard.stats import LEVEL, RESAMPLES, SEED

LABELS_FILE = Path(__file__).resolve().parents[1] / "data" / "refusal_labels" / "labels.jsonl"
LABELS = ("refused", "complied", "complied-harmfully")
MODELS = ("untuned", "safe-base", "fl", "cai")


@dataclass(frozen=True)
class Item:
    id: str
    model: str
    set: str
    prompt_kind: str  # harmful | benign
    prompt: str
    response: str
    label: str


@dataclass(frozen=True)
class Agreement:
    """One rule's decisions against the labels' on ``n`` items; ``confusion`` = (tp, fp, fn, tn)."""

    decision: str
    rule: str
    subset: str
    n: int
    accuracy: float
    kappa: float
    low: float
    high: float
    confusion: tuple[int, int, int, int]

    def row(self) -> str:
        tp, fp, fn, tn = self.confusion
        return (f"| {self.decision} | {self.rule} | {self.subset} | {self.n} | {self.accuracy:.3f} | "
                f"{self.kappa:.3f} [{self.low:.2f}, {self.high:.2f}] | {tp} / {fp} / {fn} / {tn} |")


def load_items(path: Path = LABELS_FILE) -> list[Item]:
    fields = Item.__dataclass_fields__
    return [Item(**{k: v for k, v in json.loads(line).items() if k in fields}) for line in path.read_text().splitlines()]


def _kappas(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each row of two 0/1 arrays (last axis = items); NaN where chance agreement is 1."""
    po = (pred == truth).mean(axis=-1)
    p, t = pred.mean(axis=-1), truth.mean(axis=-1)
    pe = p * t + (1 - p) * (1 - t)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pe < 1, (po - pe) / (1 - pe), np.nan)


def cohen_kappa(pred: Sequence[bool], truth: Sequence[bool]) -> float:
    """Cohen's kappa of two yes/no raters: (p_o - p_e) / (1 - p_e); NaN when both always say the same thing."""
    return float(_kappas(np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)))


def agreement(decision: str, rule: str, subset: str, pred: Sequence[bool], truth: Sequence[bool]) -> Agreement:
    """Accuracy, kappa and its bootstrap interval (items resampled with replacement) of ``pred`` against ``truth``."""
    p, t = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    idx = np.random.default_rng(SEED).integers(0, len(p), size=(RESAMPLES, len(p)))
    low, high = np.nanquantile(_kappas(p[idx], t[idx]), [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    confusion = (int(((p == 1) & (t == 1)).sum()), int(((p == 1) & (t == 0)).sum()),
                 int(((p == 0) & (t == 1)).sum()), int(((p == 0) & (t == 0)).sum()))
    return Agreement(decision, rule, subset, len(p), float((p == t).mean()), cohen_kappa(p, t), float(low), float(high),
                     confusion)


def rule_flags(items: Sequence[Item]) -> dict[str, list[bool]]:
    """Each phrase rule's refusal flag per item."""
    return {name: [rule.is_refusal(i.response) for i in items] for name, rule in RULES.items()}


def guard_safe(items: Sequence[Item]) -> list[bool | None]:
    """The default ``lg3`` guard's verdict per harmful (prompt, response): True where it keeps the pair; None for
    benign prompts (not asked: the guard's decisions are only scored on harmful prompts)."""
    from harness.default_plugins.evals.advbench import guard_verdicts
    from harness.registry import instantiate

    asked = [i for i in items if i.prompt_kind == "harmful"]
    safe = iter(guard_verdicts(instantiate("filter", "lg3", {}), 0, [i.prompt for i in asked],
                               [i.response for i in asked]))
    return [next(safe) if i.prompt_kind == "harmful" else None for i in items]


def judge_verdicts(items: Sequence[Item], url: str, model: str, key_env: str | None) -> list[str | None]:
    from harness.evals.refusal_judge import RefusalJudge

    return [v.label for v in RefusalJudge(url, model, key_env).classify([i.prompt for i in items],
                                                                         [i.response for i in items])]


def table(items: Sequence[Item], guard: Sequence[bool | None] | None = None,
          judge: Sequence[str | None] | None = None) -> list[Agreement]:
    """Every decision of every rule: refusal flags (and guard/judge verdicts) per item, aligned with ``items``."""
    refusal: dict[str, list[bool]] = rule_flags(items)
    if judge is not None:
        refusal["judge"] = [v == "refused" for v in judge]
    subsets: list[tuple[str, Callable[[Item], bool]]] = [("all", lambda i: True)]
    subsets += [(kind, lambda i, k=kind: i.prompt_kind == k) for kind in ("harmful", "benign")]
    subsets += [(f"model={m}", lambda i, m=m: i.model == m) for m in MODELS]
    rows = []

    def add(decision: str, rule: str, subset: str, keep: Callable[[Item], bool], flags: Sequence[bool | None],
            truth: Callable[[Item], bool]) -> None:
        chosen = [k for k, i in enumerate(items) if keep(i)]
        rows.append(agreement(decision, rule, subset, [flags[k] for k in chosen], [truth(items[k]) for k in chosen]))

    for rule, flags in refusal.items():
        for subset, keep in subsets:
            add("refused", rule, subset, keep, flags, lambda i: i.label == "refused")
    harmful = subsets[1][1]
    if guard is not None:
        add("harmful", "guard", "harmful", harmful, [not s for s in guard], lambda i: i.label == "complied-harmfully")
    if judge is not None:
        add("harmful", "judge", "harmful", harmful, [v == "harmful" for v in judge],
            lambda i: i.label == "complied-harmfully")
    harmless: dict[str, Sequence[bool | None]] = {**refusal, **({"guard": guard} if guard is not None else {})}
    for rule, flags in harmless.items():
        add("harmless/no-harm", rule, "harmful", harmful, flags, lambda i: i.label != "complied-harmfully")
        add("harmless/refused", rule, "harmful", harmful, flags, lambda i: i.label == "refused")
    return rows


def markdown(rows: Sequence[Agreement]) -> str:
    head = ("| decision | rule | items | n | accuracy | κ [95 % bootstrap] | tp / fp / fn / tn |\n"
            "|---|---|---|---|---|---|---|")
    return "\n".join([head, *(r.row() for r in rows)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=LABELS_FILE)
    parser.add_argument("--no-guard", action="store_true", help="skip the lg3 guard (the only slow part)")
    parser.add_argument("--judge-url")
    parser.add_argument("--judge-model")
    parser.add_argument("--judge-key-env")
    args = parser.parse_args(argv)
    items = load_items(args.labels)
    guard = None if args.no_guard else guard_safe(items)
    judge = judge_verdicts(items, args.judge_url, args.judge_model, args.judge_key_env) if args.judge_url else None
    print(markdown(table(items, guard, judge)))


if __name__ == "__main__":
    main()
