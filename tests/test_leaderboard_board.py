"""Board files (parsing and clear errors) and the per-run and over-seeds arithmetic of a leaderboard."""

import math

import pytest

from harness.leaderboard.aggregate import Cell, column_value, seed_stats, setting_of
from harness.leaderboard.board import BoardError, load_board, parse_board
from harness.leaderboard.runs import RunRecord
from harness.leaderboard.stats import Interval
from harness.leaderboard.tables import format_cell


def board_dict(**extra):
    data = {"name": "b", "experiments": ["e"], "columns": [{"name": "loss", "metric": "train/loss"}]}
    data.update(extra)
    return data


def record(latest=None, history=None) -> RunRecord:
    return RunRecord("r", "0", "run", 0, {}, {}, latest or {}, history or {})


def test_checked_in_boards_parse():
    for name in ("default", "paper-table1", "paper-table2"):
        board = load_board(name)
        assert board.columns and board.experiments
        assert board.sort_column in board.names


def test_the_default_board_shows_over_refusal_beside_refusal_discrimination():
    board = load_board("default")
    over = board.column("Over-refusal")
    assert over.metrics == ("over_refusal/refusal_rate_strict",) and over.better == "lower"
    first = board.names.index("Refusal discrimination")
    assert board.names[first + 1:first + 3] == ["AdvBench", "Over-refusal"]  # the score, then its two sides


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"columns": [{"name": "x"}]}, "exactly one of metric"),
        ({"columns": [{"name": "x", "metric": "a", "reduce": "median"}]}, "reduce must be one of"),
        ({"columns": [{"name": "x", "metric": "a", "better": "up"}]}, "better must be"),
        ({"columns": [{"name": "x", "metric": "a", "format": "%d"}]}, "not a Python number format"),
        ({"columns": [{"name": "x", "metric": "a", "colour": "red"}]}, "unknown key 'colour'"),
        ({"columns": [{"name": "x", "minus": ["a"]}]}, "minus needs a metric and at least one to subtract"),
        ({"sort": {"column": "nope"}}, "no column named 'nope'"),
        ({"method": ["harness.filter"]}, "'tags.NAME' or 'params.NAME'"),
        ({"experiments": "e"}, "experiments must be list"),
        ({"plots": {"scatter": {"x": "loss"}}}, "needs x and y"),
        ({"extra": 1}, "unknown key 'extra'"),
        ({"pin": [["a"]]}, "pin must list fields"),
        ({"baselines": [{"name": "b"}]}, "match must map fields"),
        ({"baseline": {"match": {"a": 1}}, "baselines": []}, "baseline or baselines, not both"),
    ],
)
def test_bad_board_names_the_problem(change, message):
    with pytest.raises(BoardError, match=message):
        parse_board(board_dict(**change), "my-board.yaml")


def test_missing_board_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BoardError, match=r"no board named 'nope'; looked for .*leaderboards/nope.yaml"):
        load_board("nope")
    with pytest.raises(BoardError, match="does not exist"):
        load_board(str(tmp_path / "absent.yaml"))


def test_seed_stats_mean_and_sample_std():
    cell = seed_stats([0.5, 0.6, 0.7])
    assert cell.mean == pytest.approx(0.6) and cell.std == pytest.approx(0.1) and cell.n == 3
    assert seed_stats([2.0, 4.0]).std == pytest.approx(math.sqrt(2.0))
    assert seed_stats([0.3]) == Cell(0.3, None, 1)
    assert seed_stats([]) == Cell(None, None, 0)
    assert seed_stats([1.0, float("nan"), 3.0]) == Cell(2.0, pytest.approx(math.sqrt(2.0)), 2)


def test_column_value_reduces_rounds_then_combines_metrics():
    board = parse_board(board_dict(columns=[
        {"name": "last", "metric": "m"},
        {"name": "mean", "metric": "m", "reduce": "mean"},
        {"name": "max", "metric": "m", "reduce": "max"},
        {"name": "hmean", "hmean": ["p", "r"], "reduce": "mean"},
        {"name": "sum", "sum": ["up", "down"], "reduce": "mean"},
        {"name": "absent", "metric": "nope"},
        {"name": "minus", "minus": ["round", "eval"], "reduce": "sum"},
    ]), "t")
    run = record(
        latest={"m": 3.0, "p": 0.5, "r": 1.0, "up": 10.0, "down": 30.0},
        history={"m": [(2, 3.0), (1, 1.0)], "p": [(1, 0.4), (2, 0.6)], "r": [(1, 1.0), (2, 1.0)],
                 "up": [(1, 10.0), (2, 20.0)], "down": [(1, 30.0), (2, 30.0)],
                 "round": [(1, 10.0), (2, 30.0)], "eval": [(2, 25.0)]},
    )
    values = {c.name: column_value(run, c) for c in board.columns}
    assert values["last"] == 3.0 and values["mean"] == 2.0 and values["max"] == 3.0
    assert values["hmean"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # hmean(mean p = 0.5, mean r = 1.0)
    assert values["sum"] == 45.0  # mean up 15 + mean down 30
    assert values["absent"] is None
    assert values["minus"] == 15.0  # rounds 10 + 30 less the last round's 25 s of evals
    minus = board.column("minus")
    assert column_value(record(history={"round": [(1, 10.0), (2, 30.0)]}), minus) == 40.0  # no evals: nothing less
    assert column_value(record(history={"eval": [(2, 25.0)]}), minus) is None
    pretrained_evals_first = {"round": [(1, 10.0), (2, 30.0)], "eval": [(0, 25.0), (2, 25.0)]}  # step 0: no round
    assert column_value(record(history=pretrained_evals_first), minus) == 15.0
    assert column_value(record(latest={"p": 0.0, "r": 1.0}), parse_board(board_dict(
        columns=[{"name": "h", "hmean": ["p", "r"]}]), "t").columns[0]) == 0.0


def test_cell_text_shows_the_interval_marks_partial_seeds_and_leaves_missing_empty():
    col = parse_board(board_dict(columns=[{"name": "a", "metric": "a", "format": ".2f"}]), "t").columns[0]
    assert format_cell(Cell(0.6, 0.1, 3, Interval(0.35, 0.85, "t")), col, 3) == "0.60 [0.35, 0.85]"
    assert format_cell(Cell(0.6, None, 1), col, 3) == "0.60 [n/a] (n=1)"
    assert format_cell(Cell(None, None, 0), col, 3) == ""


def test_a_hook_time_limit_is_not_part_of_a_rows_setting():
    """Issue #35 made plugins.hook_timeout_s default to 24 h: runs logged before (None) stay in the same row."""
    board = parse_board(board_dict(), "b.yaml")
    before, after = ({"model.name": "m", "plugins.hook_timeout_s": limit} for limit in ("None", "86400.0"))
    assert setting_of(RunRecord("a", "0", "a", 0, {}, before, {}), board) == {"model.name": "m"}
    assert setting_of(RunRecord("b", "0", "b", 0, {}, after, {}), board) == {"model.name": "m"}
