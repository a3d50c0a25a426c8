"""The paper's Table-1 claims, checked on a board: each is a paired comparison of two rows with its p-value.

Claims (per aggregator): FL on red data lowers safety (FL vs the pretrained model); the filter raises it
(FL+filter vs FL; the oracle filter's row shows the bound); CAI raises it (FL+CAI vs FL); both together are best
(FL+filter+CAI vs FL+filter and vs FL+CAI); CAI's helpful mix beats CAI alone (FL+CAI+helpful vs FL+CAI, the
harness's own claim: docs/cai.md). Safety is the board's ``safety`` column (refusal discrimination on the
paper-table1 suite); the costs of each method
against FL are the other columns. A claim is *shown* when the difference has the claimed sign, p < 0.05
(McNemar over paired goals and seeds, or a paired bootstrap; :func:`harness.leaderboard.aggregate.paired_test`)
and every seed's own difference has that sign too: pooling goals over seeds ignores how much seeds differ, so a
pooled p-value alone does not show a method's effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.leaderboard.aggregate import MethodRow, paired_test, seed_differences
from harness.leaderboard.board import Board, Column
from harness.leaderboard.stats import PairedTest

ALPHA = 0.05
PRETRAINED = "none (pretrained base)"
HELPFUL = "params.plugins.align_options.helpful"  # CAI's helpful mix (docs/cai.md): a row of its own
HELPFUL_CAI = "cai50+helpful"


@dataclass(frozen=True)
class Claim:
    text: str
    row: tuple[str, str]  # (filter, align) of the row the claim is about
    base: tuple[str, str] | None  # (filter, align) of the row it is compared with; None: the pretrained model
    sign: int  # +1: the row is claimed safer than the base, -1: less safe


CLAIMS = (
    Claim("FL on red data lowers safety", ("none", "none"), None, -1),
    Claim("the oracle filter (every red sample removed) raises safety", ("oracle", "none"), ("none", "none"), +1),
    Claim("the filter raises safety", ("lg3", "none"), ("none", "none"), +1),
    Claim("CAI raises safety", ("none", "cai50"), ("none", "none"), +1),
    Claim("filter + CAI beats the filter alone", ("lg3", "cai50"), ("lg3", "none"), +1),
    Claim("filter + CAI beats CAI alone", ("lg3", "cai50"), ("none", "cai50"), +1),
    Claim("CAI's helpful mix beats CAI alone", ("none", HELPFUL_CAI), ("none", "cai50"), +1),
)
COSTS = (("oracle", "none"), ("lg3", "none"), ("none", "cai50"), ("none", HELPFUL_CAI), ("lg3", "cai50"))


def _find(rows: Sequence[MethodRow], agg: str, method: tuple[str, str] | None) -> MethodRow | None:
    for row in rows:
        run = row.runs[0]
        if method is None:
            if run.field("params.eval.adapter") == PRETRAINED:
                return row
        elif (run.field("tags.harness.filter"), _align(run), run.field("tags.harness.agg")) == (
                *method, agg) and run.field("params.eval.adapter") is None:
            return row
    return None


def _align(run) -> str | None:
    """The run's aligner, ``cai50+helpful`` for CAI with its helpful mix."""
    align = run.field("tags.harness.align")
    return f"{align}+helpful" if run.field(HELPFUL) not in (None, "none") else align


def format_test(test: PairedTest | None, fmt: str) -> str:
    if test is None:
        return "–"
    ci = f" [{test.low:{fmt}}, {test.high:{fmt}}]" if test.low is not None else ""
    p = f", p = {test.p:.3g} ({test.test}, {test.pairs} pairs)" if test.p is not None else " (seed means, no test)"
    return f"{test.diff:+{fmt}}{ci}{p}"


def verdict(test: PairedTest | None, sign: int, per_seed: dict[str, float] | None = None) -> str:
    if test is None:
        return "no data"
    if test.diff * sign <= 0:
        return "**no**: the difference has the opposite sign" if test.diff else "**no**: no difference"
    if test.p is None or test.p >= ALPHA:
        return "not significant: the sign agrees, p ≥ 0.05" if test.p is not None else "sign agrees, untested"
    against = [seed for seed, diff in sorted((per_seed or {}).items()) if diff * sign <= 0]
    if against:
        return f"**no**: p < 0.05 pooled, but seed {', '.join(against)} has the opposite sign"
    return "**yes**"


def format_seeds(per_seed: dict[str, float]) -> str:
    return ", ".join(f"{diff:+.3f}" for _, diff in sorted(per_seed.items())) or "–"


def comparison_cells(row: MethodRow | None, base: MethodRow | None, column: Column, sign: int) -> str:
    """``difference [95 % CI], p | per seed | shown?`` of ``row`` − ``base`` on ``column`` for a claim of ``sign``
    (``no data`` where either row is missing)."""
    test = paired_test(row, base, column) if row and base else None
    per_seed = seed_differences(row, base, column) if row and base else {}
    return f"{format_test(test, column.format)} | {format_seeds(per_seed)} | {verdict(test, sign, per_seed)}"


def claims_markdown(board: Board, rows: Sequence[MethodRow], safety: str, costs: Sequence[str]) -> str:
    """The claim table (safety column ``safety``) and the cost table (columns ``costs``) of a paper-table1 board."""
    columns = {c.name: c for c in board.columns}
    out = [f"| claim | aggregator | row − baseline: {safety} [95 % CI], p | per seed | shown? |", "|---|---|---|---|---|"]
    aggs = sorted({r.runs[0].field("tags.harness.agg") for r in rows if r.runs[0].field("params.eval.adapter") is None})
    for claim in CLAIMS:
        for agg in aggs:
            row, base = _find(rows, agg, claim.row), _find(rows, agg, claim.base)
            out.append(f"| {claim.text} | {agg} | {comparison_cells(row, base, columns[safety], claim.sign)} |")
    out += ["", "Costs against FL with the same aggregator (row − FL; p where per-item data pairs up):", "",
            "| row | aggregator | " + " | ".join(costs) + " |", "|---|---|" + "---|" * len(costs)]
    for method in COSTS:
        for agg in aggs:
            row, base = _find(rows, agg, method), _find(rows, agg, ("none", "none"))
            if row is None or base is None:
                continue
            cells = [format_test(paired_test(row, base, columns[c]), columns[c].format)
                     if c in columns else "–" for c in costs]
            out.append(f"| {row.label} | {agg} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
