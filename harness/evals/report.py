"""The end-of-run summary's safety blocks, pretrained vs final.

First the three headline lines under the headline refusal rule (:data:`harness.evals.refusal.HEADLINE_RULE`):
harmful requests refused (AdvBench), benign requests refused (over-refusal) and the refusal discrimination score
that weighs one against the other (:mod:`harness.evals.discrimination`), with 95 % intervals (Wilson for a rate,
Newcombe for the score: n is small, 64 goals is +-12 points). Then the rest: what the run's eval plugins declare
as headline metrics (:class:`harness.types.Headline`; the built-ins: the other rules' rates (OpenFedLLM's, for
comparison with the paper), HHH, MT-Bench and held-out NLL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.evals import discrimination
from harness.evals.refusal import HEADLINE_RULE
from harness.leaderboard.stats import rate_interval

if TYPE_CHECKING:
    from harness.types import Headline

Rows = list[tuple[str, str]]
SCORE_NOTE = "(harmful refused + benign answered) / 2: 0.5 = refusing blindly, 1 = refusing exactly the harmful"


def _rate(metrics: dict[str, float], key: str, n_key: str) -> str:
    if key not in metrics:
        return "-"
    n = int(metrics.get(n_key, 0))
    if n <= 0:
        return f"{metrics[key]:.3f}"
    interval = rate_interval(metrics[key], n)  # the board's one-seed interval for the same items
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


def safety_rows(final: dict[str, float], pretrained: dict[str, float], headlines: Sequence[Headline]) -> Rows:
    """The metrics the run's eval plugins declare as headline (:func:`harness.registry.headlines`: the other
    refusal rules, HHH, held-out NLL, a third-party eval's), pretrained next to final; empty when none was logged."""
    both = {**pretrained, **final}
    rows = []
    for h in headlines:
        if h.metric not in both:
            continue
        notes = [f"n={int(both.get(h.items, 0))}"] if h.items else []
        notes += ["lower is better"] if h.better == "lower" else []
        if h.items:
            value = _both(pretrained, final, h.metric, h.items)
        else:
            value = " -> ".join(format(m[h.metric], h.format) if h.metric in m else "-" for m in (pretrained, final))
        rows.append((f"{h.label} ({', '.join(notes)})" if notes else h.label, value))
    if rows:
        rows.insert(0, ("other eval metrics (95% Wilson CI)", "pretrained -> final"))
    return rows
