"""The self-contained leaderboard page: a sortable table with links to the MLflow runs, and inline plots."""

from __future__ import annotations

import base64
from html import escape

from harness.leaderboard.aggregate import MethodRow
from harness.leaderboard.board import Board
from harness.leaderboard.plots import Plot
from harness.leaderboard.tables import DEFAULT_MLFLOW_UI, format_cell, run_url

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1a1a1a; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .6rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:hover { background: #fafae8; }
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


def _row_html(row: MethodRow, board: Board, ui: str) -> str:
    links = " ".join(
        f'<a href="{escape(run_url(ui, r))}" title="MLflow run {escape(r.name)}">{escape(s)}</a>'
        for s, r in zip(row.seeds, row.runs)
    )
    cells = [f'<td data-value="{escape(row.method)}">{escape(row.method)}</td>',
             f'<td data-value="{len(row.seeds)}">{links}</td>']
    for col in board.columns:
        cell = row.cells[col.name]
        value = "" if cell.mean is None else repr(cell.mean)
        cells.append(f'<td data-value="{value}">{escape(format_cell(cell, col, len(row.seeds)))}</td>')
    return "<tr>" + "".join(cells) + "</tr>"


def _header_html(board: Board) -> str:
    heads = ['<th data-type="text" title="filter / aggregator / aligner">Method</th>',
             '<th data-type="number" title="seeds; each links to its MLflow run">Seeds</th>']
    for col in board.columns:
        sort = ""
        if col.name == board.sort_column:
            sort = f' aria-sort="{"descending" if board.sort_descending else "ascending"}"'
        title = f"{col.combine} of {', '.join(col.metrics)}; {col.reduce} over rounds, mean ± std over seeds"
        heads.append(f'<th data-type="number" title="{escape(title)}"{sort}>{escape(col.header)}</th>')
    return "<tr>" + "".join(heads) + "</tr>"


def _plot_html(plot: Plot) -> str:
    if plot.svg is None:
        return f'<figure><figcaption>{escape(plot.title)}: {escape(plot.note)}</figcaption></figure>'
    data = base64.b64encode(plot.svg.encode()).decode()
    return (f'<figure><img alt="{escape(plot.title)}" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{escape(plot.title)} ({escape(plot.note)})</figcaption></figure>")


def to_html(board: Board, rows: list[MethodRow], plots: list[Plot], ui: str = DEFAULT_MLFLOW_UI) -> str:
    title = escape(board.title or board.name)
    body = "\n".join(_row_html(r, board, ui) for r in rows)
    notes = f'<p class="notes">{escape(board.notes.strip())}</p>' if board.notes else ""
    runs = sum(len(r.runs) for r in rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style></head>
<body>
<h1>{title}</h1>
{notes}
<p class="muted">Board <code>{escape(board.name)}</code>: {len(rows)} methods from {runs} finished MLflow runs.
Values are mean ± sample std over seeds; an empty cell means no run logged the metric. Click a header to sort;
seed links open the run in the MLflow UI at {escape(ui)}.</p>
<div class="scroll"><table id="board"><thead>{_header_html(board)}</thead>
<tbody>
{body}
</tbody></table></div>
<h2>Plots</h2>
<div class="plots">{"".join(_plot_html(p) for p in plots)}</div>
<script>{SCRIPT}</script>
</body></html>
"""
