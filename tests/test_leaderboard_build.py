"""Boards built from a real sqlite MLflow store filled here: methods, seeds, a missing metric, excluded runs;
and the HTML page checked in headless Chromium."""

import csv
import io
import os
import time
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.leaderboard import load_board, write_leaderboard
from harness.leaderboard.aggregate import Cell, MethodRow
from harness.leaderboard.browser import BrowserError, HeadlessPage, find_chromium
from harness.leaderboard.page import to_html
from harness.leaderboard.runs import RunRecord
from harness.leaderboard.stats import Interval

NOW = int(time.time() * 1000)


ADV, OVER = "advbench/harmless_rate_strict", "over_refusal/refusal_rate_strict"


def log_run(client, exp_id, method, seed, finals, *, status="FINISHED", start=NOW, name=None, rounds=3):
    """A run shaped like the tracker's: method tags, per-round metrics (step = round), final values last."""
    filt, agg, align = method
    tags = {"harness.filter": filt, "harness.agg": agg, "harness.align": align, "harness.seed": str(seed),
            "harness.preset": "smoke"}
    run = client.create_run(exp_id, start_time=start, tags=tags, run_name=name or f"{filt}-{agg}-{align}-s{seed}")
    metrics = []
    for rnd in range(1, rounds + 1):
        per_round = {"time/round_seconds": float(rnd), "comm/bytes_up": 100.0 * rnd, "comm/bytes_down": 50.0,
                     "train/loss": 2.0 / rnd + seed / 10}
        for key, final in finals.items():
            per_round[key] = final if rnd == rounds else final / 2
        metrics += [mlflow.entities.Metric(k, v, NOW, rnd) for k, v in per_round.items()]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("fedllm-harness", artifact_location=(root / "art").as_uri())
    plain, filtered, cai = ("none", "fedavg", "none"), ("lg3", "fedavg", "none"), ("none", "scaffold", "cai50")
    for seed, adv in enumerate([0.5, 0.6, 0.7]):
        log_run(client, exp, plain, seed, {ADV: adv, OVER: 0.2, "hhh/bigbench/accuracy": 0.4 + seed / 10})
    log_run(client, exp, plain, 0, {ADV: 0.0, OVER: 0.2}, start=NOW - 60_000)  # superseded re-run
    for seed, adv in enumerate([0.8, 0.9]):
        log_run(client, exp, filtered, seed, {ADV: adv, OVER: 0.3, "hhh/bigbench/accuracy": 0.5,
                                              "filter/precision": 0.5, "filter/recall": 1.0})
    log_run(client, exp, cai, 0, {"hhh/bigbench/accuracy": 0.3})  # no AdvBench score: an empty cell
    log_run(client, exp, ("lg3", "scaffold", "cai50"), 0, {"advbench/harmless_rate": 1.0}, status="FAILED")
    log_run(client, exp, ("lg3", "scaffold", "none"), 0, {"advbench/harmless_rate": 1.0}, status="RUNNING")
    other = client.create_experiment("elsewhere", artifact_location=(root / "art2").as_uri())
    log_run(client, other, ("x", "y", "z"), 0, {"advbench/harmless_rate": 1.0})
    return uri


@pytest.fixture(scope="module")
def built(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    return write_leaderboard(load_board("default"), store, out)


def test_rows_are_methods_aggregated_over_seeds(built):
    rows = {r.method: r for r in built.rows}
    # by refusal discrimination: (0.85 + 1 - 0.3) / 2 = 0.775, then (0.6 + 1 - 0.2) / 2 = 0.7, then none
    assert list(rows) == ["lg3 / fedavg / none", "none / fedavg / none", "none / scaffold / cai50"]
    plain = rows["none / fedavg / none"]
    assert plain.seeds == ["0", "1", "2"]  # the older seed-0 run is replaced by the newer one, not averaged in
    assert plain.cells["AdvBench"].mean == pytest.approx(0.6) and plain.cells["AdvBench"].std == pytest.approx(0.1)
    assert plain.cells["Refusal discrimination"].mean == pytest.approx(0.7)
    assert plain.cells["Round time (s)"].mean == pytest.approx(2.0)  # mean over rounds 1, 2, 3
    assert plain.cells["Bytes/round"].mean == pytest.approx(250.0)  # mean up 200 + down 50
    assert plain.cells["Filter Hmean"].mean is None
    assert rows["lg3 / fedavg / none"].cells["Filter Hmean"].mean == pytest.approx(4 / 9)  # hmean(mean p 1/3, mean r 2/3)
    assert rows["none / scaffold / cai50"].cells["AdvBench"].n == 0


def test_failed_running_and_other_experiment_runs_are_left_out(built):
    run_ids = {r.run_id for row in built.rows for r in row.runs}
    assert len(run_ids) == 6
    assert not any("lg3 / scaffold" in r.method or r.method.startswith("x") for r in built.rows)


def test_markdown_and_csv(built):
    md = built.markdown.read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header.startswith("| Method | Setting | Seeds | Refusal discrimination ↑ | AdvBench ↑ | Over-refusal ↓ | "
                             "HHH ↑ | Train loss ↓ | Filter Hmean ↑ |")
    assert ("* Not shown: AdvBench (loose rule), HHH-438, MT-Bench, Held-out NLL, CAI time (s) (no finished run "
            "logged them).") in md
    plain_line = next(line for line in md.splitlines() if line.startswith("| none / fedavg / none"))
    # no per-item artifacts here: a t interval over the 3 seeds, 0.6 ± t(0.975, 2) · 0.1 / sqrt(3)
    assert "0.600 [0.352, 0.848]" in plain_line and "/#/experiments/" in plain_line and "+1 older" in plain_line
    cai_line = next(line for line in md.splitlines() if line.startswith("| none / scaffold / cai50"))
    assert cai_line.split(" | ")[3] == ""  # the AdvBench cell is empty
    assert "0.300 [n/a]" in cai_line  # one seed and no item data: no interval, said so
    assert "* Interval, AdvBench: Student t over per-seed values.\n" in md
    assert "* Interval, HHH: Student t over per-seed values.\n" in md
    assert md.count("[n/a] (no interval)") == 1  # one note says why, naming the column and the reason
    assert "* [n/a] (no interval): only one seed has the value" in md
    assert "HHH: the run's per-item file is missing" in md
    assert "## Against baseline FL" in md and "The runs recorded no versions" in md
    rows = list(csv.DictReader(io.StringIO(built.csv.read_text())))
    assert [r["method"] for r in rows][0] == "lg3 / fedavg / none"
    assert float(rows[0]["AdvBench mean"]) == pytest.approx(0.85) and rows[0]["AdvBench n"] == "2"
    assert rows[2]["AdvBench mean"] == "" and rows[2]["AdvBench std"] == ""
    assert rows[0]["MT-Bench mean"] == ""  # the CSV keeps the columns no run logged


def test_html_is_self_contained_with_plots(built):
    html = built.html.read_text()
    assert "<script src" not in html and "stylesheet" not in html and "http://127.0.0.1:5000/#/experiments/" in html
    assert html.count("data:image/svg+xml;base64,") == 3  # loss and round time by round, the scatter
    assert "heldout/nll by round: no finished run logged heldout/nll" in html
    assert "MT-Bench" not in html.split("</thead>")[0] and "Not shown: AdvBench (loose rule), HHH-438, MT-Bench" in html


def test_plots_are_svg_files_the_markdown_shows(built):
    names = sorted(p.name for p in built.plots)
    assert names == ["advbench-vs-over-refusal.svg", "time-round-seconds-by-round.svg", "train-loss-by-round.svg"]
    md = built.markdown.read_text()
    for path in built.plots:
        assert path.read_text().lstrip().startswith("<?xml") and f"](plots/{path.name})" in md
    assert "heldout-nll" not in md  # nothing drawn, no broken image


def test_rewriting_a_board_removes_plots_it_no_longer_draws(store, tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "old-metric-by-round.svg").write_text("<svg/>")
    written = write_leaderboard(load_board("default"), store, tmp_path)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in written.plots)
    before = {p: p.read_text() for p in written.plots}
    write_leaderboard(load_board("default"), store, tmp_path)
    assert {p: p.read_text() for p in written.plots} == before  # the same runs give byte-identical files


def test_cli_writes_the_files_and_plots(store, tmp_path):
    result = CliRunner().invoke(main, ["leaderboard", "--tracking-uri", store, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "3 rows (one per setting) from 7 finished runs (1 older re-runs of a seed replaced" in result.output
    assert {p.name for p in tmp_path.iterdir()} == {"leaderboard.md", "leaderboard.csv", "leaderboard.html", "plots"}


def test_cli_names_a_missing_experiment_and_a_bad_filter(store, tmp_path):
    result = CliRunner().invoke(main, ["leaderboard", "--tracking-uri", store, "--out", str(tmp_path),
                                       "--experiment", "nope"])
    assert result.exit_code == 2 and "no experiment named nope" in result.output
    assert "fedllm-harness" in result.output
    result = CliRunner().invoke(main, ["leaderboard", "--tracking-uri", store, "--out", str(tmp_path),
                                       "--where", "tags.x ==== 1"])
    assert result.exit_code == 2 and "MLflow rejected the filter" in result.output


ROW_METHODS = "Array.from(document.querySelectorAll('#board tbody tr')).map(r => r.cells[0].textContent)"


def click_header(page, text):
    page.evaluate(f"Array.from(document.querySelectorAll('#board th')).find(h => h.textContent === {text!r}).click()")


def require_chromium() -> None:
    """Skip without a Chromium on PATH; with HARNESS_REQUIRE_BROWSER=1 (set by .ci/run) fail instead."""
    try:
        find_chromium()
    except BrowserError as exc:
        if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HARNESS_REQUIRE_BROWSER=1 but {exc}")
        pytest.skip(f"the real-browser check needs Chromium: {exc} (.ci/run installs it)")


def test_page_in_headless_chromium(built, tmp_path):
    require_chromium()
    with HeadlessPage(Path(built.html)) as page:
        assert page.errors == []
        first = page.evaluate(ROW_METHODS)
        assert first == ["lg3 / fedavg / none", "none / fedavg / none", "none / scaffold / cai50"]
        click_header(page, "Refusal discrimination ↑")  # sorted descending by the board: a click sorts ascending
        assert page.evaluate(ROW_METHODS) == ["none / fedavg / none", "lg3 / fedavg / none", "none / scaffold / cai50"]
        click_header(page, "HHH ↑")  # first click on a number column: descending (0.5, 0.5 mean, 0.3)
        assert page.evaluate(ROW_METHODS)[-1] == "none / scaffold / cai50"
        click_header(page, "Method")
        assert page.evaluate(ROW_METHODS) == sorted(first)
        assert page.evaluate("document.querySelectorAll('img').length") == 3
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        shot = page.screenshot(tmp_path / "leaderboard.png")
        assert page.errors == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


BOARDS = Path(__file__).resolve().parents[1] / "leaderboards"
WIDE = Cell(0.997, 0.003, 3, Interval(0.988, 1.0, "bootstrap"))  # a column the committed board did not fill


def csv_cell(line: dict, name: str) -> Cell:
    """One column's cell from a line of a committed leaderboard.csv."""
    value = {key: line[f"{name} {key}"] for key in ("mean", "std", "n", "ci_low", "ci_high", "ci_method")}
    if not value["mean"]:
        return Cell(None, None, 0)
    interval = None
    if value["ci_method"]:
        interval = Interval(float(value["ci_low"]), float(value["ci_high"]), value["ci_method"])
    return Cell(float(value["mean"]), float(value["std"]) if value["std"] else None, int(value["n"]), interval)


def committed_rows(folder: str, board) -> list[MethodRow]:
    """A committed board's rows read back from its leaderboard.csv (real methods, seeds, values and intervals); a
    column of ``board`` that the CSV lacks or no row filled gets a three-decimal cell in every row, so the page
    shows every column of ``board``."""
    lines = list(csv.DictReader(io.StringIO((BOARDS / folder / "leaderboard.csv").read_text())))
    filled = {c.name for c in board.columns if any(line.get(f"{c.name} mean") for line in lines)}
    rows = []
    for line in lines:
        seeds = line["seeds"].split()
        runs = [RunRecord(run_id, "1", f"s{s}", 0, {}, {}, {}) for s, run_id in zip(seeds, line["run_ids"].split())]
        cells = {c.name: csv_cell(line, c.name) if c.name in filled else WIDE for c in board.columns}
        rows.append(MethodRow(line["method"], (), runs, seeds, cells, shown_setting=line["setting"],
                              superseded=int(line["older_runs"]), mixed_code=line["mixed_code"].split()))
    return rows


# The board table's width against its box and the window, and its right and bottom edges.
FIT = """(() => { const t = document.getElementById("board"), r = t.getBoundingClientRect();
  return {table: t.scrollWidth, box: t.parentElement.clientWidth, page: document.documentElement.scrollWidth,
          window: document.documentElement.clientWidth, right: r.right, bottom: r.bottom + window.scrollY,
          columns: t.tHead.rows[0].cells.length}; })()"""


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


@pytest.mark.parametrize(("folder", "name"), [("repro-cpu", "paper-table1"), ("harmful-cpu", "paper-table1"),
                                              ("repro-cpu", "default")])
def test_the_widest_boards_fit_a_1280_to_1440_px_screen_and_its_screenshot(folder, name, tmp_path):
    """A committed board's real rows with every column of the board filled (the widest boards: paper-table1 and
    default): at 1280 and 1440 px nothing scrolls sideways (before #36: a 2760-2790 px table in a 1152 px box) and the screenshot
    holds the whole table."""
    require_chromium()
    board = load_board(name)
    html = tmp_path / "leaderboard.html"
    html.write_text(to_html(board, committed_rows(folder, board), []))
    for width in (1280, 1440):
        with HeadlessPage(html, width=width) as page:
            fit = page.evaluate(FIT)
            shot = page.screenshot(tmp_path / f"leaderboard-{width}.png")
            assert page.errors == []
        assert fit["columns"] == 2 + len(board.columns)  # Method (with its setting below it), Seeds, every column
        assert fit["table"] <= fit["box"] and fit["page"] <= fit["window"], (width, fit)
        shot_width, shot_height = png_size(shot)
        assert fit["right"] <= shot_width and fit["bottom"] <= shot_height, (width, fit, png_size(shot))


def test_without_chromium_the_browser_check_skips_or_fails_when_required(monkeypatch):
    monkeypatch.setattr("harness.leaderboard.browser.shutil.which", lambda name: None)
    monkeypatch.delenv("HARNESS_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs Chromium"):
        require_chromium()
    monkeypatch.setenv("HARNESS_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="HARNESS_REQUIRE_BROWSER=1"):
        require_chromium()
