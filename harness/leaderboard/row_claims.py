"""Claims between a suite's named rows, checked on its board: each a paired comparison with its p-value.

A suite names its rows; the board's rows are found by their runs' names (``<prefix><row>-s<seed>``). A claim is
shown under the rule of :mod:`harness.leaderboard.claims`: the claimed sign, p < 0.05 pooled, and every seed's own
difference with that sign.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.leaderboard.aggregate import MethodRow, paired_test
from harness.leaderboard.board import Board
from harness.leaderboard.claims import comparison_cells, format_test

SEED_SUFFIX = re.compile(r"-s\d+$")


@dataclass(frozen=True)
class RowClaim:
    text: str
    row: str  # the suite row the claim is about
    base: str  # the suite row it is compared with
    sign: int  # +1: the row's column is claimed higher than the base's, -1: lower
    column: str | None = None  # None: the claims' safety column


def suite_row(row: MethodRow, prefix: str) -> str | None:
    """The suite row name of a board row whose runs are named ``<prefix><row>-s<seed>``; None for another row."""
    name = SEED_SUFFIX.sub("", row.runs[0].name)
    return name[len(prefix):] if name.startswith(prefix) else None


def row_claims_markdown(board: Board, rows: Sequence[MethodRow], prefix: str, claims: Sequence[RowClaim],
                        safety: str, costs: Sequence[str], cost_bases: dict[str, str]) -> str:
    """The claim table (each claim's column, the safety column by default) and the cost table: every row of
    ``cost_bases`` against its base row on the ``costs`` columns."""
    columns = {c.name: c for c in board.columns}
    named = {name: row for row in rows if (name := suite_row(row, prefix)) is not None}
    out = ["| claim | row − base | column | difference [95 % CI], p | per seed | shown? |", "|---|---|---|---|---|---|"]
    for claim in claims:
        column = claim.column or safety
        cells = comparison_cells(named.get(claim.row), named.get(claim.base), columns[column], claim.sign)
        out.append(f"| {claim.text} | {claim.row} − {claim.base} | {column} | {cells} |")
    out += ["", "Each row against its base (row − base; p where per-item data pairs up):", "",
            "| row − base | " + " | ".join(costs) + " |", "|---|" + "---|" * len(costs)]
    for name, base_name in cost_bases.items():
        row, base = named.get(name), named.get(base_name)
        if row is None or base is None:
            continue
        cells = [format_test(paired_test(row, base, columns[c]), columns[c].format) if c in columns else "–" for c in costs]
        out.append(f"| {name} − {base_name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
