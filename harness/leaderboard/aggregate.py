"""From runs to leaderboard rows: one value per run and column, then mean ± std over a method's seeds."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from harness.leaderboard.board import Board, Column
from harness.leaderboard.runs import RunRecord

MISSING_FIELD = "default"  # how a method key the run does not have is shown


@dataclass(frozen=True)
class Cell:
    """A column's value for one method: mean and sample standard deviation (ddof=1) over n seeds."""

    mean: float | None
    std: float | None  # None when fewer than two seeds have the value
    n: int


@dataclass
class MethodRow:
    """One leaderboard row: a method (e.g. filter/aggregator/aligner), the seeds' runs behind it, its cells."""

    method: str
    key: tuple[str, ...]
    runs: list[RunRecord]  # one per seed, ordered by seed
    seeds: list[str]
    cells: dict[str, Cell]


def seed_stats(values: list[float]) -> Cell:
    """Mean and sample standard deviation of per-seed values (NaNs dropped); std needs at least two."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return Cell(None, None, 0)
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Cell(statistics.fmean(finite), std, len(finite))


def _reduce(run: RunRecord, metric: str, how: str) -> float | None:
    if how == "last":
        return run.latest.get(metric)
    if metric not in run.history:
        return None
    values = [v for _, v in sorted(run.history[metric])]
    return {"mean": statistics.fmean, "min": min, "max": max, "sum": math.fsum}[how](values)


def column_value(run: RunRecord, column: Column) -> float | None:
    """The run's value for a column, None if the run lacks any metric the column needs."""
    values = [_reduce(run, m, column.reduce) for m in column.metrics]
    if any(v is None for v in values):
        return None
    if column.combine == "hmean":
        return 0.0 if any(v <= 0 for v in values) else len(values) / math.fsum(1 / v for v in values)
    if column.combine == "sum":
        return math.fsum(values)
    return values[0]


def method_key(run: RunRecord, board: Board) -> tuple[str, ...]:
    return tuple(run.field(k) or MISSING_FIELD for k in board.method)


def _label(key: tuple[str, ...], runs: list[RunRecord]) -> str:
    """The method's known parts joined by ' / '; the run name when the run has none of them."""
    return " / ".join(part for part in key if part != MISSING_FIELD) or runs[0].name


def latest_per_seed(runs: list[RunRecord], board: Board) -> dict[str, RunRecord]:
    """Seed -> the most recently started run with that seed (a re-run replaces, never double-counts)."""
    chosen: dict[str, RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.start_time):
        chosen[run.field(board.seed) or "?"] = run
    return chosen


def _seed_order(seed: str) -> tuple[int, int | str]:
    return (0, int(seed)) if seed.lstrip("-").isdigit() else (1, seed)


def build_rows(runs: list[RunRecord], board: Board) -> list[MethodRow]:
    """Group runs by method, aggregate every column over seeds, and sort by the board's sort column."""
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(method_key(run, board), []).append(run)
    rows = []
    for key, members in groups.items():
        per_seed = latest_per_seed(members, board)
        seeds = sorted(per_seed, key=_seed_order)
        ordered = [per_seed[s] for s in seeds]
        cells = {}
        for col in board.columns:
            values = [column_value(r, col) for r in ordered]
            cells[col.name] = seed_stats([v for v in values if v is not None])
        rows.append(MethodRow(_label(key, ordered), key, ordered, seeds, cells))
    return sort_rows(rows, board)


def sort_rows(rows: list[MethodRow], board: Board) -> list[MethodRow]:
    """By the sort column (missing values last), ties and unsorted boards by method name."""
    rows = sorted(rows, key=lambda r: r.method)
    if board.sort_column is None:
        return rows
    present = [r for r in rows if r.cells[board.sort_column].mean is not None]
    absent = [r for r in rows if r.cells[board.sort_column].mean is None]
    present.sort(key=lambda r: r.cells[board.sort_column].mean, reverse=board.sort_descending)
    return present + absent
