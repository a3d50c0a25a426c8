"""Markdown and CSV writers for a leaderboard, and the cell formatting they share with the HTML page."""

from __future__ import annotations

import csv
import io

from harness.leaderboard.aggregate import Cell, MethodRow
from harness.leaderboard.board import Board, Column
from harness.leaderboard.runs import RunRecord

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui --backend-store-uri URI` serves


def run_url(ui: str, run: RunRecord) -> str:
    return f"{ui.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


def format_cell(cell: Cell, column: Column, seeds: int) -> str:
    """'0.812 ± 0.013', '(n=2)' appended when fewer seeds than the row's have the value, '' when none has."""
    if cell.mean is None:
        return ""
    text = format(cell.mean, column.format)
    if cell.std is not None:
        text += f" ± {format(cell.std, column.format)}"
    if cell.n < seeds:
        text += f" (n={cell.n})"
    return text


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(board: Board, rows: list[MethodRow], ui: str = DEFAULT_MLFLOW_UI) -> str:
    header = ["Method", "Seeds"] + [c.header for c in board.columns]
    lines = [f"# {board.title or board.name}", ""]
    if board.notes:
        lines += [board.notes.strip(), ""]
    lines += [
        "Values are mean ± sample std over seeds; an empty cell means no finished run logged that metric.",
        "",
        "| " + " | ".join(map(_md_escape, header)) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * len(board.columns)) + "|",
    ]
    for row in rows:
        seeds = " ".join(f"[{s}]({run_url(ui, r)})" for s, r in zip(row.seeds, row.runs))
        cells = [format_cell(row.cells[c.name], c, len(row.seeds)) for c in board.columns]
        lines.append("| " + " | ".join([_md_escape(row.method), seeds] + cells) + " |")
    if not rows:
        lines.append("| (no finished runs) |" + " |" * (len(header) - 1))
    return "\n".join(lines) + "\n"


def to_csv(board: Board, rows: list[MethodRow]) -> str:
    """One line per method: raw mean, std and n per column (empty when missing), seeds and run ids."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["method", "seeds", "run_ids"]
    for col in board.columns:
        header += [f"{col.name} mean", f"{col.name} std", f"{col.name} n"]
    writer.writerow(header)
    for row in rows:
        line = [row.method, " ".join(row.seeds), " ".join(r.run_id for r in row.runs)]
        for col in board.columns:
            cell = row.cells[col.name]
            line += ["" if cell.mean is None else repr(cell.mean), "" if cell.std is None else repr(cell.std), cell.n]
        writer.writerow(line)
    return out.getvalue()
