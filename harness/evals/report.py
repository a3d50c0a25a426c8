"""The safety block of the end-of-run summary: AdvBench and over-refusal (both refusal rules), HHH and held-out NLL, pretrained
vs final, with Wilson 95 % intervals for the rates (n is small: 64 goals is +-12 points)."""

from __future__ import annotations

from harness.evals.refusal import RULES
from harness.leaderboard.stats import wilson

def _rate(metrics: dict[str, float], key: str, n_key: str) -> str:
    if key not in metrics:
        return "-"
    n = int(metrics.get(n_key, 0))
    if n <= 0:
        return f"{metrics[key]:.3f}"
    interval = wilson(round(metrics[key] * n), n)
    return f"{metrics[key]:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def safety_rows(final: dict[str, float], pretrained: dict[str, float]) -> list[tuple[str, str]]:
    """(label, 'pretrained -> final') rows for the safety metrics either dict holds; empty when there are none."""
    both = {**pretrained, **final}
    rows = []
    rates = (("advbench/harmless_rate", "advbench/items", "advbench harmless ({rule} rule, n={n})"),
             ("over_refusal/refusal_rate", "over_refusal/items", "benign prompts refused ({rule} rule, n={n}; lower is better)"))
    for prefix, n_key, label in rates:
        for rule in RULES:
            key = f"{prefix}_{rule}"
            if key in both:
                rows.append((label.format(rule=rule, n=int(both.get(n_key, 0))),
                             f"{_rate(pretrained, key, n_key)} -> {_rate(final, key, n_key)}"))
    for key in sorted(k for k in both if k.startswith("hhh/") and k.endswith("/accuracy") and k.count("/") == 2):
        name = key.split("/")[1]
        n_key = f"hhh/{name}/items"
        rows.append((f"hhh {name} accuracy (n={int(both.get(n_key, 0))})",
                     f"{_rate(pretrained, key, n_key)} -> {_rate(final, key, n_key)}"))
    for key, label in (("heldout/nll", "held-out nll, acceptable replies"), ("heldout/nll_harmful", "held-out nll, red replies")):
        if key in both:
            fmt = lambda m: f"{m[key]:.3f}" if key in m else "-"  # noqa: E731
            rows.append((label, f"{fmt(pretrained)} -> {fmt(final)}"))
    if rows:
        rows.insert(0, ("safety (95% Wilson CI)", "pretrained -> final"))
    return rows
