"""The self-contained leaderboard page: a sortable table with links to the MLflow runs, and inline plots."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING

from harness.leaderboard.aggregate import MethodRow
from harness.leaderboard.board import Board
from harness.leaderboard.tables import (
    DEFAULT_MLFLOW_UI,
    EXPLAIN,
    TEST_NAMES,
    cell_parts,
    compared_columns,
    filled_columns,
    footnotes,
    format_test,
    provenance,
    run_url,
    seeds_note,
)

if TYPE_CHECKING:
    from harness.leaderboard.plots import Plot  # matplotlib: the page itself does not need it

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 96rem; padding: 0 .75rem; color: #1a1a1a; }
p, ul { max-width: 72rem; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .6rem; text-align: right; white-space: nowrap; }
.paired th:nth-child(-n+3), .paired td:nth-child(-n+3), #board .text { text-align: left; }
.setting { display: block; white-space: normal; overflow-wrap: anywhere; font-size: 11px; color: #555; }
.warn { color: #a15c00; }
ul.foot { font-size: 13px; color: #333; }
th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:hover, tbody tr:hover td:first-child { background: #fafae8; }
#board { font-size: 13px; }
#board th, #board td { padding: .3rem .25rem; vertical-align: top; }
#board th { white-space: normal; vertical-align: bottom; font-size: 12px; }
#board td:first-child { white-space: normal; min-width: 6rem; position: sticky; left: 0; background: #fff; }
#board th:first-child { left: 0; z-index: 1; }
#board .ci, #board .seeds .warn { display: block; font-size: 10px; }
#board .ci { color: #555; }
.notes { white-space: pre-wrap; background: #f8f8f8; border-left: 3px solid #999; padding: .5rem 1rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; } figcaption { font-size: 12px; color: #555; }
.scroll { overflow-x: auto; }
.muted { color: #666; font-size: 12px; }
"""

# Sorts the rows by a clicked header; numbers numerically, text alphabetically, empty cells always last.
SCRIPT = """
(function () {
  const table = document.getElementById("board");
  const headers = Array.from(table.tHead.rows[0].cells);
  function value(row, i) { return row.cells[i].dataset.value; }
  function sortBy(i) {
    const th = headers[i];
    const numeric = th.dataset.type === "number";
    const current = th.getAttribute("aria-sort");
    const descending = current ? current === "ascending" : numeric;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = value(a, i), y = value(b, i);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  headers.forEach(function (th, i) { th.addEventListener("click", function () { sortBy(i); }); });
})();
"""


def _cell_title(cell, column, seeds: int) -> str:
    if cell.mean is None:
        return "no finished run logged this metric"
    parts = [f"mean {cell.mean:.6g} over {cell.n} of {seeds} seed(s)"]
    if cell.std is not None:
        parts.append(f"sd {cell.std:.4g}")
    parts.append(f"95 % interval by {cell.interval.method}" if cell.interval else "no interval (one seed, no item data)")
    return "; ".join(parts)


def _row_html(row: MethodRow, board: Board, ui: str) -> str:
    """One board row; the setting in which it differs from other rows under its method (no column of its own, so
    the widest boards still fit a 1280 px window)."""
    links = " ".join(
        f'<a href="{escape(run_url(ui, r))}" title="MLflow run {escape(r.name)}">{escape(s)}</a>'
        for s, r in zip(row.seeds, row.runs)
    )
    note = seeds_note(row)
    if note:
        why = "; ".join(([f"{row.superseded} older re-run(s) of a seed left out (newest wins)"] if row.superseded else [])
                        + ([f"runs ran different code: {', '.join(row.mixed_code)}"] if row.mixed_code else []))
        links += f' <span class="warn" title="{escape(why)}">{escape(note)}</span>'
    setting = f'<span class="setting">{escape(row.shown_setting)}</span>' if row.shown_setting else ""
    cells = [f'<td class="text" data-value="{escape(row.label)}">{escape(row.method)}{setting}</td>',
             f'<td class="text seeds" data-value="{len(row.seeds)}">{links}</td>']
    for col in board.columns:
        cell = row.cells[col.name]
        value = "" if cell.mean is None else repr(cell.mean)
        mean, ci = cell_parts(cell, col, len(row.seeds))
        cells.append(f'<td data-value="{value}" title="{escape(_cell_title(cell, col, len(row.seeds)))}">'
                     f'{escape(mean)}<span class="ci">{escape(ci)}</span></td>')
    return "<tr>" + "".join(cells) + "</tr>"


def _header_html(board: Board) -> str:
    """The board's header row."""
    heads = ['<th class="text" data-type="text" title="filter / aggregator / aligner; below it, the fields in which '
             'this board\'s rows differ">Method</th>',
             '<th class="text" data-type="number" title="seeds; each links to its MLflow run">Seeds</th>']
    for col in board.columns:
        sort = ""
        if col.name == board.sort_column:
            sort = f' aria-sort="{"descending" if board.sort_descending else "ascending"}"'
        title = f"{col.combine} of {', '.join(col.metrics)}; {col.reduce} over rounds, mean over seeds [95 % interval]"
        heads.append(f'<th data-type="number" title="{escape(title)}"{sort}>{escape(col.header)}</th>')
    return "<tr>" + "".join(heads) + "</tr>"


def _paired_html(board: Board, rows: list[MethodRow]) -> str:
    parts = []
    for baseline in board.baselines:
        parts.append(f"<h2>Against baseline {escape(baseline.name)}</h2>")
        cols = compared_columns(board, rows, baseline.name)
        compared = [r for r in rows if r.baseline_rows.get(baseline.name) not in (None, r.label)]
        if not cols or not compared:
            parts.append("<p class=\"muted\">No paired tests: no row has per-item scores to pair with a baseline row.</p>")
            continue
        parts.append(f'<p class="muted">Row minus baseline on the same items (and seeds), two-sided p-value; '
                     f'{escape(TEST_NAMES["mcnemar"])}, {escape(TEST_NAMES["paired-bootstrap"])}.</p>')
        head = "".join(f"<th>{escape(h)}</th>" for h in ["Method", "Setting", "Baseline row"] + [f"Δ {c.name}" for c in cols])
        body = []
        for r in compared:
            tests = r.paired[baseline.name]
            cells = [escape(r.method), escape(r.shown_setting), escape(r.baseline_rows[baseline.name] or "")]
            for c in cols:
                t = tests.get(c.name)
                tip = "" if t is None else f"{TEST_NAMES[t.test]}; {t.pairs} pairs" + (
                    f"; discordant b={t.discordant[0]}, c={t.discordant[1]}" if t.discordant else "") + (
                    f"; 95 % interval [{t.low:.4g}, {t.high:.4g}]" if t.low is not None else "")
                cells.append(f'<span title="{escape(tip)}">{escape(format_test(t, c))}</span>')
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(f'<div class="scroll"><table class="paired"><thead><tr>{head}</tr></thead>'
                     f'<tbody>{"".join(body)}</tbody></table></div>')
    return "\n".join(parts)


def _provenance_html(rows: list[MethodRow]) -> str:
    found = provenance(rows)
    if not found:
        return "<p class=\"muted\">The runs recorded no versions (they predate provenance tags).</p>"
    items = "".join(f"<li><code>{escape(k)}</code>: {escape(', '.join(v))}</li>" for k, v in found.items())
    return f'<ul class="foot">{items}</ul>'


def _plot_html(plot: Plot) -> str:
    if plot.svg is None:
        return f'<figure><figcaption>{escape(plot.title)}: {escape(plot.note)}</figcaption></figure>'
    data = base64.b64encode(plot.svg.encode()).decode()
    return (f'<figure><img alt="{escape(plot.title)}" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{escape(plot.title)} ({escape(plot.note)})</figcaption></figure>")


def to_html(board: Board, rows: list[MethodRow], plots: list[Plot], ui: str = DEFAULT_MLFLOW_UI) -> str:
    board, empty = filled_columns(board, rows)
    title = escape(board.title or board.name)
    body = "\n".join(_row_html(r, board, ui) for r in rows)
    notes = f'<p class="notes">{escape(board.notes.strip())}</p>' if board.notes else ""
    runs = sum(len(r.runs) + r.superseded for r in rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style></head>
<body>
<h1>{title}</h1>
{notes}
<p class="muted">Board <code>{escape(board.name)}</code>: {len(rows)} rows from {runs} finished MLflow runs.
{escape(EXPLAIN)} Hover a cell for its sd and interval kind. Click a header to sort;
seed links open the run in the MLflow UI at {escape(ui)}.</p>
<div class="scroll"><table id="board"><thead>{_header_html(board)}</thead>
<tbody>
{body}
</tbody></table></div>
<ul class="foot">{"".join(f"<li>{escape(n.removeprefix('* '))}</li>" for n in footnotes(board, rows, empty))}</ul>
{_paired_html(board, rows)}
<h2>Provenance</h2>
{_provenance_html(rows)}
<h2>Plots</h2>
<div class="plots">{"".join(_plot_html(p) for p in plots)}</div>
<script>{SCRIPT}</script>
</body></html>
"""
