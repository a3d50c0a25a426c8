"""Row identity (one row per setting), pins, 95 % intervals and paired tests against a baseline, checked against
values computed here by hand on a small fixed example (a real sqlite MLflow store with per-item artifacts)."""

import json
import math
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from harness.leaderboard import write_leaderboard
from harness.leaderboard.board import BoardError, parse_board
from harness.leaderboard.stats import bootstrap_mean, mcnemar_exact, paired_bootstrap, t_interval, wilson

NOW = int(time.time() * 1000)
T975_DF2 = 4.302652729911275  # Student t, 97.5 % quantile, 2 degrees of freedom (tables)

BOARD = {
    "name": "t", "experiments": ["e"],
    "method": ["tags.harness.filter", "tags.harness.agg", "tags.harness.align"],
    "columns": [{"name": "AdvBench", "metric": "advbench/harmless_rate", "format": ".3f"},
                {"name": "HHH", "metric": "hhh/bigbench/accuracy", "format": ".3f"},
                {"name": "NLL", "metric": "heldout/nll", "format": ".3f"}],
    "baseline": {"name": "FL", "match": {"tags.harness.filter": "none", "tags.harness.align": "none"},
                 "same": ["tags.harness.agg"]},
}


def hand_wilson(k, n, z=1.959963984540054):
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def hand_mcnemar(b, c):
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)


def test_wilson_t_and_mcnemar_equal_the_formulas():
    assert (wilson(7, 20).low, wilson(7, 20).high) == pytest.approx(hand_wilson(7, 20), abs=1e-12)
    assert (wilson(0, 16).low, wilson(0, 16).high) == pytest.approx((0.0, 1.96**2 / (16 + 1.96**2)), abs=1e-4)  # k = 0: z²/(n+z²)
    t = t_interval([0.5, 0.6, 0.7])
    assert (t.low, t.high) == pytest.approx((0.6 - T975_DF2 * 0.1 / math.sqrt(3), 0.6 + T975_DF2 * 0.1 / math.sqrt(3)))
    assert t_interval([0.3]) is None
    row = [True] * 8 + [False] * 2 + [True] * 1 + [False] * 9  # b = 8 (row 1, base 0), c = 2 (row 0, base 1)
    base = [False] * 8 + [False] * 2 + [True] * 1 + [True] * 2 + [False] * 7
    test = mcnemar_exact(row, base)
    assert test.discordant == (8, 2) and test.p == pytest.approx(hand_mcnemar(8, 2))
    assert test.p == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 2 P(X <= 2), X ~ Bin(10, 1/2)
    assert test.diff == pytest.approx((8 - 2) / 20)
    assert mcnemar_exact([True, False], [True, False]).p == 1.0


def test_bootstraps_are_seeded_and_sensible():
    scores = [[0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0], [0.5, 0.5, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0]]
    first, again = bootstrap_mean(scores), bootstrap_mean(scores)
    assert first == again and first.low < 0.6875 < first.high and first.method == "bootstrap"
    assert bootstrap_mean([[1.0, 1.0], [1.0, 1.0]]).low == 1.0  # no spread, no width
    same = paired_bootstrap([0.5, 1.0, 0.0], [0.5, 1.0, 0.0])
    assert same.diff == 0.0 and same.p == 1.0
    shifted = paired_bootstrap([1.0] * 30, [0.0] * 30)
    assert shifted.diff == 1.0 and shifted.p < 0.001
    noisy = paired_bootstrap([0.0, 1.0, 0.5, 1.0, 0.0, 0.5], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert noisy.p > 0.5 and noisy == paired_bootstrap([0.0, 1.0, 0.5, 1.0, 0.0, 0.5], [0.5] * 6)


PLAIN, FILTERED = ("none", "fedavg", "none"), ("lg3", "fedavg", "none")


def log_run(client, exp, method, seed, *, params=None, advbench=None, hhh=None, nll=None, start=NOW, rule=None):
    """A finished run shaped like the tracker's: tags, config params, metrics at round 2 and their item files
    (AdvBench's refusals under the openfedllm rule, logged as ``advbench/harmless_rate``; with ``rule``, under that
    rule, as ``advbench/harmless_rate_RULE``)."""
    filt, agg, align = method
    tags = {"harness.filter": filt, "harness.agg": agg, "harness.align": align, "harness.seed": str(seed)}
    run_id = client.create_run(exp, start_time=start, tags=tags, run_name=f"{filt}-s{seed}").info.run_id
    base = {"model.name": "tiny-random", "federation.lr": "0.0002", "federation.rounds": "2",
            "federation.seed": str(seed), "output_dir": f"/tmp/x{seed}", "tracking.run_name": f"r{seed}",
            "plugins.filter": filt, "plugins.agg": agg, "plugins.align": align}
    base.update(params or {})
    client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in base.items()])
    metrics = {}
    if advbench is not None:
        rows = [{"goal": f"g{i}", "response": "r", "refusal_openfedllm": bool(v), "refusal_strict": False}
                for i, v in enumerate(advbench)]
        if rule:
            rows = [{**r, "refusal_openfedllm": False, f"refusal_{rule}": bool(v)} for r, v in zip(rows, advbench)]
        client.log_text(run_id, "".join(json.dumps(r) + "\n" for r in rows), "round_002/advbench_responses.jsonl")
        metrics[f"advbench/harmless_rate{'_' + rule if rule else ''}"] = sum(advbench) / len(advbench)
        metrics["advbench/items"] = float(len(advbench))
    if hhh is not None:
        rows = [{"set": "bigbench", "index": i, "subset": "harmless",
                 "orders": [{"right": bool(a)}, {"right": bool(b)}]} for i, (a, b) in enumerate(hhh)]
        client.log_text(run_id, "".join(json.dumps(r) + "\n" for r in rows), "round_002/hhh_scores.jsonl")
        metrics["hhh/bigbench/accuracy"] = sum(a + b for a, b in hhh) / (2 * len(hhh))
        metrics["hhh/bigbench/items"] = float(len(hhh))
    if nll is not None:
        metrics["heldout/nll"] = nll
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, NOW, 2) for k, v in metrics.items()])
    client.set_terminated(run_id)
    return run_id


# AdvBench refusals of the baseline (FL) and the filtered row, seed 0, on the same 20 goals.
FL_ADV = [0] * 10 + [1] * 3 + [0] * 7
LG3_ADV = [1] * 8 + [0] * 2 + [1] * 1 + [0] * 9  # b = 8 (lg3 refuses, FL not), c = 2 (FL refuses, lg3 not)
HHH_FL = [(1, 0), (0, 0), (1, 1), (0, 1)]
HHH_LG3 = [(1, 1), (1, 0), (1, 1), (1, 1)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=(root / "art").as_uri())
    for seed, nll in enumerate([2.0, 2.2, 2.4]):  # one setting, three seeds: one row
        log_run(client, exp, PLAIN, seed, advbench=FL_ADV if seed == 0 else None, nll=nll,
                hhh=HHH_FL if seed == 0 else None)
    log_run(client, exp, PLAIN, 0, nll=9.0, start=NOW - 60_000)  # an older re-run of seed 0: replaced
    # The same method with another learning rate and round count: a row of its own.
    log_run(client, exp, PLAIN, 0, params={"federation.lr": "0.5", "federation.rounds": "3"}, nll=5.0)
    log_run(client, exp, FILTERED, 0, advbench=LG3_ADV, hhh=HHH_LG3, nll=2.1)
    return uri


@pytest.fixture(scope="module")
def built(store, tmp_path_factory):
    return write_leaderboard(parse_board(BOARD, "t.yaml"), store, tmp_path_factory.mktemp("out"))


def rows_by(built):
    return {(r.method, r.shown_setting): r for r in built.rows}


def test_runs_differing_only_in_seed_form_one_row_and_lr_splits(built):
    rows = rows_by(built)
    assert set(rows) == {("none / fedavg / none", "federation.lr=0.0002, federation.rounds=2"),
                         ("none / fedavg / none", "federation.lr=0.5, federation.rounds=3"),
                         ("lg3 / fedavg / none", "federation.lr=0.0002, federation.rounds=2")}
    plain = rows[("none / fedavg / none", "federation.lr=0.0002, federation.rounds=2")]
    assert plain.seeds == ["0", "1", "2"] and plain.superseded == 1
    assert plain.cells["NLL"].mean == pytest.approx(2.2)
    assert built.runs == 6
    md = built.markdown.read_text()
    assert "| none / fedavg / none | federation.lr=0.5, federation.rounds=3 |" in md
    assert "* Setting: the rows differ in federation.lr, federation.rounds; all other settings are equal." in md
    assert "+1 older" in md


def test_intervals_equal_hand_computed_values(built):
    rows = rows_by(built)
    lg3 = rows[("lg3 / fedavg / none", "federation.lr=0.0002, federation.rounds=2")]
    adv = lg3.cells["AdvBench"]  # one seed, 9 of 20 refused: Wilson
    assert adv.mean == pytest.approx(9 / 20) and adv.interval.method == "wilson"
    assert (adv.interval.low, adv.interval.high) == pytest.approx(hand_wilson(9, 20), abs=1e-12)
    hhh = lg3.cells["HHH"].interval  # one seed, item scores 0.5 / 1 (7 of 8 orders right): Wilson, as the run summary
    assert hhh.method == "wilson" and (hhh.low, hhh.high) == pytest.approx(hand_wilson(3.5, 4), abs=1e-12)
    assert lg3.cells["NLL"].interval is None  # one seed, no items: n/a
    plain = rows[("none / fedavg / none", "federation.lr=0.0002, federation.rounds=2")]
    nll = plain.cells["NLL"]  # three seeds, no items: t
    half = T975_DF2 * 0.2 / math.sqrt(3)
    assert (nll.interval.low, nll.interval.high) == pytest.approx((2.2 - half, 2.2 + half))
    assert plain.cells["AdvBench"].interval.method == "wilson"  # only seed 0 has it (n=1 of 3 seeds)
    md = built.markdown.read_text()
    low, high = hand_wilson(9, 20)
    assert f"0.450 [{low:.3f}, {high:.3f}]" in md and "2.100 [n/a]" in md
    assert "NLL: such values have no per-item scores (losses, NLL, times" in md and "per-item file is missing" not in md
    csv_text = built.csv.read_text()
    assert "AdvBench ci_low" in csv_text and repr(adv.interval.low) in csv_text


def test_mcnemar_and_paired_bootstrap_against_the_baseline(built):
    rows = rows_by(built)
    lg3 = rows[("lg3 / fedavg / none", "federation.lr=0.0002, federation.rounds=2")]
    assert lg3.baseline_rows["FL"] == "none / fedavg / none (federation.lr=0.0002, federation.rounds=2)"
    adv = lg3.paired["FL"]["AdvBench"]
    assert adv.test == "mcnemar" and adv.discordant == (8, 2) and adv.pairs == 20
    assert adv.p == pytest.approx(hand_mcnemar(8, 2)) and adv.diff == pytest.approx((9 - 3) / 20)
    hhh = lg3.paired["FL"]["HHH"]
    assert hhh.test == "paired-bootstrap" and hhh.pairs == 4
    assert hhh.diff == pytest.approx((1 + 0.5 + 1 + 1) / 4 - (0.5 + 0 + 1 + 0.5) / 4)
    assert hhh.p == paired_bootstrap([1.0, 0.5, 1.0, 1.0], [0.5, 0.0, 1.0, 0.5]).p  # seeded: reproducible
    nll = lg3.paired["FL"]["NLL"]
    assert nll.test == "seeds" and nll.p is None and nll.diff == pytest.approx(2.1 - 2.2)
    # the lr=0.5 row is compared with the FL row closest to it... which is itself (it is an FL row)
    assert rows[("none / fedavg / none", "federation.lr=0.5, federation.rounds=3")].paired == {}
    md = built.markdown.read_text()
    section = md.split("## Against baseline FL")[1]
    assert f"+0.300 (p={hand_mcnemar(8, 2):.3f})" in section
    assert "Δ AdvBench" in section and "Δ HHH" in section and "Δ NLL" not in section


def test_a_pinned_field_refuses_a_mismatching_run(store, tmp_path):
    pinned = parse_board({**BOARD, "pin": ["federation.lr"]}, "t.yaml")
    with pytest.raises(BoardError, match=r"pins federation.lr: its runs must agree on it, but run .* has "
                                         r"federation.lr = '(0.5|0.0002)' and run .* has '(0.0002|0.5)'") as err:
        write_leaderboard(pinned, store, tmp_path)  # which run is named first follows the store's order
    assert "'0.5'" in str(err.value) and "'0.0002'" in str(err.value)
    to_value = parse_board({**BOARD, "pin": {"model.name": "SmolLM2"}}, "t.yaml")
    with pytest.raises(BoardError, match=r"pins model.name = 'SmolLM2', but run .* has model.name = 'tiny-random'"):
        write_leaderboard(to_value, store, tmp_path)
    ok = parse_board({**BOARD, "pin": {"model.name": "tiny-random"}}, "t.yaml")
    assert len(write_leaderboard(ok, store, tmp_path).rows) == 3


def test_html_has_intervals_paired_tests_and_provenance(built):
    html = built.html.read_text()
    assert "Against baseline FL" in html and "Provenance" in html and "95 % interval by wilson" in html
    assert "6 finished MLflow runs" in html


def test_all_equal_binary_items_over_seeds_get_a_wilson_interval_not_zero_width():
    from harness.leaderboard.aggregate import cell_stats

    items = [{f"i{k}": 0.0 for k in range(8)} for _ in range(2)]  # two seeds, every item refused 0 times
    cell = cell_stats([0.0, 0.0], items)
    expected = wilson(0, 16)
    assert cell.interval.method == "wilson" and cell.interval.high == pytest.approx(expected.high)
    assert expected.high > 0.15


def test_paper_table2_pairs_the_finetuned_guard_with_the_suites_forced_base_row(tmp_path):
    """The suite's filter-base row forces lg3 on the bare backbone; the board's baseline must find it."""
    from harness.leaderboard.board import load_board
    from harness.suite import paper_table2

    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "guard.json").write_text(json.dumps({"base": "smollm2-135m"}))
    rows = {r.name: r for r in paper_table2(str(guard)).rows}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("paper-table2", artifact_location=(tmp_path / "art").as_uri())
    for name, adv in (("filter-base", FL_ADV), ("filter-finetuned", LG3_ADV)):
        options = {f"plugins.filter_options.{k}": str(v) for k, v in rows[name].filter_options.items()}
        log_run(client, exp, FILTERED, 0, params={"preset": "demo", "data.source": "demo", **options}, advbench=adv,
                rule="strict")
    built = write_leaderboard(load_board("paper-table2"), uri, tmp_path / "out")
    (tuned,) = [r for r in built.rows if str(guard) in r.method]
    assert tuned.baseline_rows["filter-base"] and "smollm2-135m" in tuned.baseline_rows["filter-base"]
    assert tuned.paired["filter-base"]["AdvBench"].discordant == (8, 2)


def test_the_run_summary_and_the_boards_one_run_cell_show_one_interval(tmp_path):
    """A model that picks one letter whatever the order scores ½ on every HHH item: the default board's one-run cell
    and the run summary both read Wilson's [0.280, 0.720] for 8 of 16, not a zero-width [0.500, 0.500]; AdvBench
    too."""
    from harness.evals.report import headline_rows, safety_rows
    from harness.leaderboard.board import load_board
    from harness.leaderboard.tables import format_cell
    from harness.registry import headlines

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("fedllm-harness", artifact_location=(tmp_path / "art").as_uri())
    run_id = log_run(client, exp, PLAIN, 0, advbench=LG3_ADV, hhh=[(1, 0)] * 16, rule="strict")
    board = load_board("default")
    (row,) = write_leaderboard(board, uri, tmp_path / "out").rows
    columns = {c.name: c for c in board.columns}
    shown = {name: format_cell(row.cells[name], columns[name], 1) for name in ("HHH", "AdvBench")}
    metrics = client.get_run(run_id).data.metrics
    summary = dict(safety_rows(metrics, {}, headlines(["hhh"]))) | dict(headline_rows(metrics, {}))
    assert shown["HHH"] == "0.500 [0.280, 0.720]"
    assert summary["hhh bigbench accuracy (n=16)"] == "- -> 0.500 [0.280, 0.720]"
    assert summary["harmful requests refused (AdvBench, n=20)"] == f"- -> {shown['AdvBench']}"
    assert row.cells["HHH"].interval.method == row.cells["AdvBench"].interval.method == "wilson"
