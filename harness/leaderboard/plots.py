"""Matplotlib plots for the page, returned as SVG text: metrics against the round, safety against its price.

The scatter of harmful requests refused against benign requests refused is a frontier plot when the board has a
balanced column over those two metrics: it draws the lines of equal refusal discrimination (0.5 on the diagonal,
where refusing does not depend on the request) and the frontier of the rows no other row beats on both axes."""

from __future__ import annotations

import io
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.leaderboard.aggregate import MethodRow  # noqa: E402
from harness.leaderboard.board import Board  # noqa: E402


@dataclass(frozen=True)
class Plot:
    title: str
    svg: str | None  # None: nothing to draw
    note: str = ""


def _svg(fig) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fedllm-harness"}):  # same data, same file
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def mean_curve(row: MethodRow, metric: str) -> list[tuple[int, float]]:
    """Per round, the mean over the seeds that logged ``metric`` at that round."""
    by_round: dict[int, list[float]] = {}
    for run in row.runs:
        for step, value in run.history.get(metric, []):
            by_round.setdefault(step, []).append(value)
    return [(step, statistics.fmean(values)) for step, values in sorted(by_round.items())]


def round_plot(rows: list[MethodRow], metric: str) -> Plot:
    curves = {row.label: mean_curve(row, metric) for row in rows}
    curves = {method: curve for method, curve in curves.items() if curve}
    title = f"{metric} by round"
    if not curves:
        return Plot(title, None, f"no finished run logged {metric}")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for method, curve in curves.items():
        ax.plot([s for s, _ in curve], [v for _, v in curve], marker="o", markersize=3, label=method)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return Plot(title, _svg(fig), "mean over seeds")


def _err(cell) -> list[list[float]] | float:
    """Asymmetric error bar from the cell's 95 % interval (none without one)."""
    if cell.interval is None:
        return 0.0
    return [[max(0.0, cell.mean - cell.interval.low)], [max(0.0, cell.interval.high - cell.mean)]]


ISO_SCORES = (0.5, 0.75, 0.9)


def _balanced_over(board: Board, x_metric: str, y_metric: str) -> bool:
    return any(c.combine == "balanced" and c.metrics == (y_metric, x_metric) for c in board.columns)


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (lower x, higher y), by x."""
    ordered = sorted(points, key=lambda p: (p[0], -p[1]))
    front: list[tuple[float, float]] = []
    for x, y in ordered:
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _draw_frontier(ax, points: list[tuple[float, float]]) -> None:
    for score in ISO_SCORES:  # harmful - benign = 2 * score - 1
        offset = 2 * score - 1
        ax.plot([0, 1 - offset], [offset, 1], color="grey", lw=0.8, ls=":")
        ax.annotate(f"discrimination {score:g}", (0.02, offset + 0.02), fontsize=6, color="grey")
    front = frontier(points)
    ax.step([x for x, _ in front], [y for _, y in front], where="post", color="black", lw=0.8, alpha=0.6,
            label="frontier")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)


def scatter_plot(rows: list[MethodRow], board: Board) -> Plot:
    x_col, y_col = board.column(board.scatter.x), board.column(board.scatter.y)
    title = f"{y_col.header} vs {x_col.header}"
    points = [(r, r.cells[x_col.name], r.cells[y_col.name]) for r in rows]
    points = [(r, x, y) for r, x, y in points if x.mean is not None and y.mean is not None]
    skipped = len(rows) - len(points)
    note = f"{skipped} row(s) without both values not shown" if skipped else "error bars: 95 % intervals"
    if not points:
        return Plot(title, None, f"no method has both {x_col.name} and {y_col.name}")
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for row, x, y in points:
        ax.errorbar(x.mean, y.mean, xerr=_err(x), yerr=_err(y), fmt="o", capsize=3, label=row.label)
        ax.annotate(row.label, (x.mean, y.mean), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if x_col.combine == y_col.combine == "metric" and _balanced_over(board, x_col.metrics[0], y_col.metrics[0]):
        _draw_frontier(ax, [(x.mean, y.mean) for _, x, y in points])
        note += "; dotted: equal refusal discrimination; solid: the frontier (no row is better on both axes)"
    ax.set_xlabel(x_col.header)
    ax.set_ylabel(y_col.header)
    ax.grid(alpha=0.3)
    return Plot(title, _svg(fig), note)


def board_plots(rows: list[MethodRow], board: Board) -> list[Plot]:
    plots = [round_plot(rows, metric) for metric in board.round_plots]
    if board.scatter is not None:
        plots.append(scatter_plot(rows, board))
    return plots


def write_plot_files(plots: list[Plot], folder: Path) -> list[tuple[str, Path]]:
    """Write each drawn plot to ``folder/<title>.svg`` (older SVGs there are removed); returns (title, path) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.svg"):
        stale.unlink()
    written = []
    for plot in plots:
        if plot.svg is None:
            continue
        path = folder / (re.sub(r"[^a-z0-9]+", "-", plot.title.lower()).strip("-") + ".svg")
        path.write_text(plot.svg)
        written.append((plot.title, path))
    return written
