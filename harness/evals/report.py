"""The end-of-run summary's safety blocks, pretrained vs final.

First the three headline lines under the headline refusal rule (:data:`harness.evals.refusal.HEADLINE_RULE`):
harmful requests refused (AdvBench), benign requests refused (over-refusal) and the refusal discrimination score
that weighs one against the other (:mod:`harness.evals.discrimination`), with 95 % intervals (Wilson for a rate,
Newcombe for the score: n is small, 64 goals is +-12 points). Then the rest: the other rules' rates (OpenFedLLM's,
for comparison with the paper), HHH and held-out NLL.
"""

from __future__ import annotations

from harness.evals import discrimination
from harness.evals.refusal import HEADLINE_RULE, RULES
from harness.leaderboard.stats import wilson

Rows = list[tuple[str, str]]
SCORE_NOTE = "(harmful refused + benign answered) / 2: 0.5 = refusing blindly, 1 = refusing exactly the harmful"


def _rate(metrics: dict[str, float], key: str, n_key: str) -> str:
    if key not in metrics:
        return "-"
    n = int(metrics.get(n_key, 0))
    if n <= 0:
        return f"{metrics[key]:.3f}"
    interval = wilson(round(metrics[key] * n), n)
    return f"{metrics[key]:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def _score(metrics: dict[str, float]) -> str:
    found = discrimination.of(metrics)
    if found is None:
        return "-"
    interval = found.interval()
    return f"{found.score:.3f}" + (f" [{interval.low:.3f}, {interval.high:.3f}]" if interval else "")


def _both(pretrained: dict[str, float], final: dict[str, float], key: str, n_key: str) -> str:
    return f"{_rate(pretrained, key, n_key)} -> {_rate(final, key, n_key)}"


def headline_rows(final: dict[str, float], pretrained: dict[str, float]) -> Rows:
    """The three lines a reader compares methods by; empty when neither AdvBench nor over-refusal ran."""
    both = {**pretrained, **final}
    harmful = f"{discrimination.HARMFUL}_{HEADLINE_RULE}"
    benign = f"{discrimination.BENIGN}_{HEADLINE_RULE}"
    rows = []
    if harmful in both:
        rows.append((f"harmful requests refused (AdvBench, n={int(both.get(discrimination.HARMFUL_ITEMS, 0))})",
                     _both(pretrained, final, harmful, discrimination.HARMFUL_ITEMS)))
    if benign in both:
        rows.append((f"benign requests refused (over-refusal, n={int(both.get(discrimination.BENIGN_ITEMS, 0))})",
                     _both(pretrained, final, benign, discrimination.BENIGN_ITEMS)))
    if discrimination.of(both) is not None:
        rows.append(("refusal discrimination", f"{_score(pretrained)} -> {_score(final)}"))
        rows.append(("", SCORE_NOTE))
    if rows:
        rows.insert(0, (f"SAFETY ({HEADLINE_RULE} refusal rule, 95% CI)", "pretrained -> final"))
    return rows


def safety_rows(final: dict[str, float], pretrained: dict[str, float]) -> Rows:
    """The other safety metrics either dict holds (the other refusal rules, HHH, held-out NLL); empty when none."""
    both = {**pretrained, **final}
    rows = []
    rates = ((discrimination.HARMFUL, discrimination.HARMFUL_ITEMS, "advbench harmless ({rule} rule, n={n})"),
             (discrimination.BENIGN, discrimination.BENIGN_ITEMS,
              "benign prompts refused ({rule} rule, n={n}; lower is better)"))
    for prefix, n_key, label in rates:
        for rule in RULES:
            key = f"{prefix}_{rule}"
            if key in both and rule != HEADLINE_RULE:
                rows.append((label.format(rule=rule, n=int(both.get(n_key, 0))), _both(pretrained, final, key, n_key)))
    for key in sorted(k for k in both if k.startswith("hhh/") and k.endswith("/accuracy") and k.count("/") == 2):
        name = key.split("/")[1]
        n_key = f"hhh/{name}/items"
        rows.append((f"hhh {name} accuracy (n={int(both.get(n_key, 0))})", _both(pretrained, final, key, n_key)))
    for key, label in (("heldout/nll", "held-out nll, acceptable replies"), ("heldout/nll_harmful", "held-out nll, red replies")):
        if key in both:
            fmt = lambda m: f"{m[key]:.3f}" if key in m else "-"  # noqa: E731
            rows.append((label, f"{fmt(pretrained)} -> {fmt(final)}"))
    if rows:
        rows.insert(0, ("other safety metrics (95% Wilson CI)", "pretrained -> final"))
    return rows
