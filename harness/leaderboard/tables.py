"""Markdown and CSV writers for a leaderboard, and the cell formatting they share with the HTML page."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence

from harness.leaderboard.aggregate import CODE_TAGS, PLUGIN_TAG, Cell, MethodRow, item_backed, varying_fields
from harness.leaderboard.board import Board, Column
from harness.leaderboard.items import has_items
from harness.leaderboard.runs import RunRecord
from harness.leaderboard.stats import PairedTest

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui --backend-store-uri URI` serves


def run_url(ui: str, run: RunRecord) -> str:
    return f"{ui.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


INTERVAL_NAMES = {"wilson": "Wilson score interval of the item mean, as in the run summary (one seed, or items all "
                            "equal over seeds; items scored 0 to 1)",
                  "newcombe": "Newcombe's hybrid score interval from the two rates' Wilson intervals (one seed)",
                  "bootstrap": "bootstrap over seeds and items (10 000 resamples, fixed seed; within harmful and benign "
                               "requests for a balanced score)",
                  "t": "Student t over per-seed values"}
TEST_NAMES = {"mcnemar": "exact McNemar test on paired items", "paired-bootstrap": "paired bootstrap over items",
              "seeds": "difference of seed means, no test (no per-item data)"}


def cell_parts(cell: Cell, column: Column, seeds: int) -> tuple[str, str]:
    """('0.812', '[0.790, 0.833]'): the mean and its 95 % interval ('[n/a]' when it has none), ' (n=2)' appended
    when fewer seeds than the row's have the value; ('', '') when none has."""
    if cell.mean is None:
        return "", ""
    interval, fmt = cell.interval, column.format
    ci = "[n/a]" if interval is None else f"[{format(interval.low, fmt)}, {format(interval.high, fmt)}]"
    return format(cell.mean, fmt), ci + (f" (n={cell.n})" if cell.n < seeds else "")


def format_cell(cell: Cell, column: Column, seeds: int) -> str:
    """'0.812 [0.790, 0.833]' (:func:`cell_parts` on one line), '' when no seed has the value."""
    return " ".join(part for part in cell_parts(cell, column, seeds) if part)


def format_p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def format_test(test: PairedTest | None, column: Column) -> str:
    """'+0.050 (p=0.031)', '+0.050 (no test)' for a seed-mean difference, '' when there is nothing to compare."""
    if test is None:
        return ""
    diff = format(test.diff, "+" + column.format.lstrip("+"))
    return f"{diff} (p={format_p(test.p)})" if test.p is not None else f"{diff} (no test)"


def seeds_note(row: MethodRow) -> str:
    """'+1 older' when re-runs of a seed were replaced, '⚠ code' when the row's runs ran different code."""
    notes = [f"+{row.superseded} older"] if row.superseded else []
    return " ".join(notes + (["⚠ code"] if row.mixed_code else []))


def interval_methods(board: Board, rows: list[MethodRow]) -> list[str]:
    """Per column, the interval kinds its cells use."""
    out = []
    for col in board.columns:
        kinds = sorted({row.cells[col.name].interval.method for row in rows if row.cells[col.name].interval})
        if kinds:
            out.append(f"{col.name}: {'; '.join(INTERVAL_NAMES[k] for k in kinds)}")
    return out


def na_note(board: Board, rows: list[MethodRow]) -> str | None:
    """Why cells read '[n/a]', naming their columns; None when none does."""
    cols = [c for c in board.columns
            if any(r.cells[c.name].mean is not None and r.cells[c.name].interval is None for r in rows)]
    if not cols:
        return None
    itemless = [c.name for c in cols if not (item_backed(c) and all(has_items(m) for m in c.metrics))]
    unread = [c.name for c in cols if c.name not in itemless]
    note = ("* [n/a] (no interval): only one seed has the value, so there is no spread over seeds, and no per-item "
            "scores stand behind it to resample.")
    if itemless:
        note += (f" {', '.join(itemless)}: such values have no per-item scores (losses, NLL, times, byte counts, "
                 "values over rounds or combined from several metrics).")
    if unread:
        note += (f" {', '.join(unread)}: the run's per-item file is missing or does not reproduce its logged value "
                 "(a run from before item files were logged, for one).")
    return note


def compared_columns(board: Board, rows: list[MethodRow], baseline: str) -> list[Column]:
    """Columns with at least one real test (per-item data) against ``baseline``."""
    return [c for c in board.columns
            if any(t.p is not None for r in rows for n, t in r.paired.get(baseline, {}).items() if n == c.name)]


def provenance(rows: list[MethodRow]) -> dict[str, list[str]]:
    """Tag -> the distinct values the board's runs logged (harness version and commit, libraries, plugin
    packages), 'not recorded' for runs from before provenance was logged."""
    keys = set(CODE_TAGS) | {k for r in rows for run in r.runs for k in run.tags if k.startswith(PLUGIN_TAG)}
    found = {}
    for key in sorted(keys):
        values = sorted({run.tags.get(key, "not recorded") for r in rows for run in r.runs})
        if values != ["not recorded"]:
            found[key] = values
    return found


def filled_columns(board: Board, rows: list[MethodRow]) -> tuple[Board, list[str]]:
    """The board without the columns no row has a value in (all of them while it has no rows), and their names:
    the markdown and HTML leave those out, the CSV keeps every column."""
    empty = [c.name for c in board.columns if rows and all(r.cells[c.name].mean is None for r in rows)]
    return dataclasses.replace(board, columns=tuple(c for c in board.columns if c.name not in empty)), empty


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: list[str], lines: list[list[str]], numeric_from: int) -> list[str]:
    out = ["| " + " | ".join(map(_md_escape, header)) + " |",
           "|" + "|".join(["---"] * numeric_from + ["---:"] * (len(header) - numeric_from)) + "|"]
    return out + ["| " + " | ".join(map(_md_escape, line)) + " |" for line in lines]


EXPLAIN = ("Each cell is the mean over seeds and, in brackets, its 95 % interval (how to read it: "
           "docs/leaderboards.md). A row is one setting: runs equal in everything but the seed. "
           "An empty cell means no finished run of that row logged the metric.")


def to_markdown(board: Board, rows: list[MethodRow], ui: str = DEFAULT_MLFLOW_UI,
                plots: Sequence[tuple[str, str]] = ()) -> str:
    """The board as markdown; ``plots`` are (title, relative path) pairs of image files shown after the table."""
    board, empty = filled_columns(board, rows)
    header = ["Method", "Setting", "Seeds"] + [c.header for c in board.columns]
    lines = [f"# {board.title or board.name}", ""]
    if board.notes:
        lines += [board.notes.strip(), ""]
    lines += [EXPLAIN, ""]
    body = []
    for row in rows:
        seeds = " ".join(f"[{s}]({run_url(ui, r)})" for s, r in zip(row.seeds, row.runs))
        note = seeds_note(row)
        cells = [format_cell(row.cells[c.name], c, len(row.seeds)) for c in board.columns]
        body.append([row.method, row.shown_setting, seeds + (f" {note}" if note else "")] + cells)
    if not rows:
        body.append(["(no finished runs)"] + [""] * (len(header) - 1))
    lines += _md_table(header, body, 3)
    lines += ["", *footnotes(board, rows, empty)]
    if plots:
        lines += ["", "## Plots"]
        for title, path in plots:
            lines += ["", f"![{title}]({path})"]
    for baseline in board.baselines:
        lines += ["", f"## Against baseline {baseline.name}", ""]
        cols = compared_columns(board, rows, baseline.name)
        compared = [r for r in rows if r.baseline_rows.get(baseline.name) not in (None, r.label)]
        if not cols or not compared:
            lines.append("No paired tests: no row has per-item scores to pair with a baseline row.")
            continue
        lines += [f"Row minus baseline on the same items (and seeds), with the two-sided p-value; "
                  f"{'; '.join(TEST_NAMES[k] for k in ('mcnemar', 'paired-bootstrap'))}.", ""]
        table = [[r.method, r.shown_setting, r.baseline_rows[baseline.name] or ""]
                 + [format_test(r.paired[baseline.name].get(c.name), c) for c in cols] for r in compared]
        lines += _md_table(["Method", "Setting", "Baseline row"] + [f"Δ {c.name}" for c in cols], table, 3)
    lines += ["", "## Provenance", ""]
    found = provenance(rows)
    if not found:
        lines.append("The runs recorded no versions (they predate provenance tags).")
    for key, values in found.items():
        lines.append(f"* `{key}`: {', '.join(values)}")
    return "\n".join(lines) + "\n"


def footnotes(board: Board, rows: list[MethodRow], empty: Sequence[str] = ()) -> list[str]:
    """What the Setting and Seeds columns and the intervals mean on this board, and which ``empty`` columns of
    its definition no run logged."""
    varying = varying_fields(rows, board)
    notes = [f"* Setting: the rows differ in {', '.join(varying)}; all other settings are equal."
             if varying else "* Setting: all rows share one setting apart from the method."]
    if any(r.superseded for r in rows):
        notes.append("* Seeds: a seed run more than once counts once, the newest run; '+k older' counts those left out.")
    flagged = [f"{r.label} ({', '.join(r.mixed_code)})" for r in rows if r.mixed_code]
    if flagged:
        notes.append("* ⚠ code: runs of these rows ran different code versions: " + "; ".join(flagged) + ".")
    if empty:
        notes.append(f"* Not shown: {', '.join(empty)} (no finished run logged them).")
    na = na_note(board, rows)
    return notes + [f"* Interval, {text}." for text in interval_methods(board, rows)] + ([na] if na else [])


def to_csv(board: Board, rows: list[MethodRow]) -> str:
    """One line per row: raw mean, std, n, interval (low, high, method) per column, the paired tests against
    each baseline (difference, p, test), seeds, run ids, replaced re-runs and mixed-code tags."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["method", "setting", "seeds", "run_ids", "older_runs", "mixed_code"]
    for col in board.columns:
        header += [f"{col.name} {k}" for k in ("mean", "std", "n", "ci_low", "ci_high", "ci_method")]
    for baseline in board.baselines:
        header.append(f"vs {baseline.name} baseline_row")
        for col in board.columns:
            header += [f"{col.name} vs {baseline.name} {k}" for k in ("diff", "p", "test")]
    writer.writerow(header)
    for row in rows:
        line = [row.method, row.shown_setting, " ".join(row.seeds), " ".join(r.run_id for r in row.runs),
                row.superseded, " ".join(row.mixed_code)]
        for col in board.columns:
            cell = row.cells[col.name]
            ci = cell.interval
            line += ["" if cell.mean is None else repr(cell.mean), "" if cell.std is None else repr(cell.std), cell.n,
                     "" if ci is None else repr(ci.low), "" if ci is None else repr(ci.high), "" if ci is None else ci.method]
        for baseline in board.baselines:
            line.append(row.baseline_rows.get(baseline.name) or "")
            tests = row.paired.get(baseline.name, {})
            for col in board.columns:
                t = tests.get(col.name)
                line += ["", "", ""] if t is None else [repr(t.diff), "" if t.p is None else repr(t.p), t.test]
        writer.writerow(line)
    return out.getvalue()
