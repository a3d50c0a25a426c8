"""Leaderboards: board definitions (YAML) -> finished MLflow runs -> one row per setting, mean over seeds with a
95 % interval, paired tests against baselines, provenance -> md, csv, html, and the plots as SVG files.

    board = load_board("paper-table1")
    written = write_leaderboard(board, "sqlite:///harness-runs/mlflow.db", "out/")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.leaderboard.aggregate import MethodRow, build_rows
from harness.leaderboard.board import Board, BoardError, load_board
from harness.leaderboard.items import ItemStore
from harness.leaderboard.page import to_html
from harness.leaderboard.runs import fetch_runs
from harness.leaderboard.tables import DEFAULT_MLFLOW_UI, to_csv, to_markdown


@dataclass(frozen=True)
class Leaderboard:
    """What was written: the rows, the three files and the plots (SVG files the markdown shows)."""

    rows: list[MethodRow]
    markdown: Path
    csv: Path
    html: Path
    plots: list[Path]

    @property
    def runs(self) -> int:
        """Finished runs read, including older re-runs of a seed that a newer run replaced."""
        return sum(len(r.runs) + r.superseded for r in self.rows)


def write_leaderboard(board: Board, tracking_uri: str, out_dir: str | Path, ui: str = DEFAULT_MLFLOW_UI) -> Leaderboard:
    """Read the board's finished runs from ``tracking_uri`` and write leaderboard.{md,csv,html} and plots/*.svg
    into ``out_dir``."""
    from mlflow.tracking import MlflowClient

    from harness.leaderboard.plots import board_plots, write_plot_files  # matplotlib: only when a board is written

    client = MlflowClient(tracking_uri)
    runs = fetch_runs(client, board)
    if board.headlines:  # the runs' declarations (harness.tracking.HEADLINE_TAG); last-round values need no history
        board = board.with_headlines(run.tags.get("harness.headline") for run in runs)
    rows = build_rows(runs, board, ItemStore(client).items)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = board_plots(rows, board)
    drawn = write_plot_files(plots, out / "plots")
    files = Leaderboard(rows, out / "leaderboard.md", out / "leaderboard.csv", out / "leaderboard.html",
                        [path for _, path in drawn])
    shown = [(title, path.relative_to(out).as_posix()) for title, path in drawn]
    files.markdown.write_text(to_markdown(board, rows, ui, shown))
    files.csv.write_text(to_csv(board, rows))
    files.html.write_text(to_html(board, rows, plots, ui))
    return files


__all__ = ["Board", "BoardError", "Leaderboard", "load_board", "write_leaderboard"]
