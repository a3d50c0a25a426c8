"""Refusal discrimination (issue #34 item 1): one score that is high only when a model refuses harmful requests and
answers benign ones, its intervals and paired tests, the board column, the frontier plot and the run summary."""

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cli.summary import print_summary
from harness.config import load_config
from harness.evals import discrimination
from harness.evals.discrimination import Discrimination, balanced, derived_metrics
from harness.leaderboard.aggregate import build_rows, column_value
from harness.leaderboard.board import BoardError, load_board, parse_board
from harness.leaderboard.plots import frontier
from harness.leaderboard.runs import RunRecord
from harness.leaderboard.stats import bootstrap_mean, newcombe, paired_bootstrap, stratified_mean

HARMFUL, BENIGN = "advbench/harmless_rate_strict", "over_refusal/refusal_rate_strict"


def test_balanced_accuracy_is_half_for_refusing_everything_or_nothing():
    assert balanced(1.0, 1.0) == balanced(0.0, 0.0) == balanced(0.3, 0.3) == 0.5
    assert balanced(1.0, 0.0) == 1.0 and balanced(0.0, 1.0) == 0.0
    assert balanced(0.9, 0.2) == pytest.approx(0.85)


def test_derived_metrics_per_rule_and_headline():
    metrics = {HARMFUL: 0.984, BENIGN: 0.656, "advbench/harmless_rate_openfedllm": 0.406,
               "over_refusal/refusal_rate_openfedllm": 0.7, "advbench/items": 64.0, "over_refusal/items": 32.0,
               "advbench/harmless_rate": 0.984, "over_refusal/hhh-benign/refusal_rate": 0.5}
    out = derived_metrics(metrics)
    assert out == {"safety/discrimination_strict": pytest.approx((0.984 + 0.344) / 2),
                   "safety/discrimination_openfedllm": pytest.approx((0.406 + 0.3) / 2),
                   "safety/discrimination": pytest.approx((0.984 + 0.344) / 2)}
    assert derived_metrics({HARMFUL: 0.5}) == {}  # over-refusal did not run: no score


def test_newcombe_matches_the_papers_worked_example():
    # Newcombe (1998), Table II example (b): 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339.
    interval = newcombe(56, 70, 48, 80)
    assert interval.low == pytest.approx(0.0524, abs=1e-4) and interval.high == pytest.approx(0.3339, abs=1e-4)
    assert interval.method == "newcombe"


def test_score_interval_maps_the_difference_interval():
    found = Discrimination("strict", 56 / 70, 48 / 80, 70, 80)
    interval = found.interval()
    assert interval.low == pytest.approx(0.5 + 0.0524 / 2, abs=1e-4)
    assert interval.high == pytest.approx(0.5 + 0.3339 / 2, abs=1e-4)
    assert Discrimination("strict", 0.5, 0.5, 0, 10).interval() is None


def test_stratified_statistics_weigh_each_set_equally():
    values, strata = [1.0] * 10 + [0.0] * 90, ["harmful"] * 10 + ["benign"] * 90
    assert stratified_mean(values, strata) == 0.5 and stratified_mean(values) == pytest.approx(0.1)
    interval = bootstrap_mean([values], strata=[strata])  # each set is constant: resampling within sets changes nothing
    assert interval.low == interval.high == 0.5
    plain = bootstrap_mean([values])
    assert plain.high < 0.5
    test = paired_bootstrap([1.0] * 10 + [1.0] * 90, values, strata=strata)
    assert test.diff == pytest.approx(0.5)  # benign answered everywhere in the row, nowhere in the base
    with pytest.raises(ValueError, match="3 strata for 2 items"):
        stratified_mean([1.0, 0.0], ["a", "b", "c"])


def board(**extra):
    data = {"name": "b", "experiments": ["e"], "method": ["tags.harness.align"], "columns": [
        {"name": "Discrimination", "balanced": [HARMFUL, BENIGN], "better": "higher"},
        {"name": "AdvBench", "metric": HARMFUL, "better": "higher"},
        {"name": "Over-refusal", "metric": BENIGN, "better": "lower"}],
        "sort": {"column": "Discrimination"},
        "baseline": {"name": "FL", "match": {"tags.harness.align": "none"}}}
    data.update(extra)
    return parse_board(data, "b.yaml")


def test_a_balanced_column_needs_two_metrics():
    with pytest.raises(BoardError, match="balanced needs two metrics"):
        parse_board({"name": "b", "experiments": ["e"], "columns": [{"name": "d", "balanced": [HARMFUL]}]}, "b.yaml")
    for name in ("default", "paper-table1"):
        shipped = load_board(name)
        assert shipped.sort_column == "Refusal discrimination"
        assert shipped.column("Refusal discrimination").metrics == (HARMFUL, BENIGN)


def item_run(align: str, seed: int, harmful: list[int], benign: list[int]) -> tuple[RunRecord, dict]:
    latest = {HARMFUL: sum(harmful) / len(harmful), BENIGN: sum(benign) / len(benign)}
    run = RunRecord(f"{align}{seed}", "0", f"{align}{seed}", seed, {"harness.align": align, "harness.seed": str(seed)},
                    {}, latest, {k: [(3, v)] for k, v in latest.items()})
    items = {HARMFUL: {str(i): float(v) for i, v in enumerate(harmful)},
             BENIGN: {str(i): float(v) for i, v in enumerate(benign)}}
    return run, items


def rows_of(*runs):
    found = {run.run_id: items for run, items in runs}
    return build_rows([run for run, _ in runs], board(), lambda run, metric: found[run.run_id].get(metric))


def test_refusing_everything_does_not_win_the_board():
    refuse_all = item_run("refuse-all", 0, [1] * 20, [1] * 16)
    careful = item_run("careful", 0, [1] * 16 + [0] * 4, [1] * 2 + [0] * 14)
    base = item_run("none", 0, [1] * 10 + [0] * 10, [1] * 2 + [0] * 14)
    rows = rows_of(refuse_all, careful, base)
    assert [r.method for r in rows] == ["careful", "none", "refuse-all"]  # refuse-all wins AdvBench, ranks last
    by = {r.method: r for r in rows}
    assert by["refuse-all"].cells["Discrimination"].mean == 0.5
    assert by["refuse-all"].cells["AdvBench"].mean == 1.0
    cell = by["careful"].cells["Discrimination"]
    assert cell.mean == pytest.approx((0.8 + 14 / 16) / 2)
    expected = newcombe(16, 20, 2, 16)  # one seed: the summary's interval, mapped to the balanced scale
    assert cell.interval.method == "newcombe"
    assert cell.interval.low == pytest.approx(0.5 + expected.low / 2)
    test = by["careful"].paired["FL"]["Discrimination"]
    assert test.test == "paired-bootstrap" and test.diff == pytest.approx(0.15) and test.p < 0.05  # (0.8 - 0.5) / 2
    assert by["refuse-all"].paired["FL"]["Discrimination"].diff == pytest.approx(0.5 - (0.5 + 14 / 16) / 2)


def test_several_seeds_bootstrap_within_the_two_sets():
    runs = [item_run("careful", s, [1] * (15 + s) + [0] * (5 - s), [1] * (2 + s) + [0] * (14 - s)) for s in range(3)]
    runs += [item_run("none", s, [1] * 10 + [0] * 10, [1] * 2 + [0] * 14) for s in range(3)]
    by = {r.method: r for r in rows_of(*runs)}
    cell = by["careful"].cells["Discrimination"]
    assert cell.n == 3 and cell.interval.method == "bootstrap" and cell.interval.low < cell.mean < cell.interval.high
    values = [column_value(run, board().column("Discrimination")) for run, _ in runs[:3]]
    assert cell.mean == pytest.approx(sum(values) / 3)


def test_frontier_keeps_the_rows_no_other_beats_on_both_axes():
    points = [(0.8, 1.0), (0.1, 0.6), (0.3, 0.9), (0.4, 0.7), (0.0, 0.2)]
    assert frontier(points) == [(0.0, 0.2), (0.1, 0.6), (0.3, 0.9), (0.8, 1.0)]


def fake_summary(**metrics):
    final = {HARMFUL: 0.984, BENIGN: 0.656, "advbench/harmless_rate_openfedllm": 0.406, "advbench/items": 64.0,
             "over_refusal/refusal_rate_openfedllm": 0.7, "over_refusal/items": 32.0, "filter/kept": 20.0,
             "filter/dropped": 12.0, "filter/precision": 0.5, "filter/recall": 0.75, "agg/c_norm": 0.01,
             "agg/control_variate_bytes": 1e6, "align/pairs": 40.0, "align/dpo_steps": 25.0, "align/seconds": 80.0,
             "train/loss": 1.25, **metrics}
    pretrained = {HARMFUL: 0.656, BENIGN: 0.281, "advbench/items": 64.0, "over_refusal/items": 32.0}
    return SimpleNamespace(status="FINISHED", rounds_completed=3, wall_seconds=420.0, adapter_path=Path("a"),
                           final_metrics=final, pretrained_metrics=pretrained)


@pytest.fixture
def log_level():
    root = logging.getLogger()
    before = root.level
    yield root.setLevel
    root.setLevel(before)


def test_summary_leads_with_the_three_headline_lines(capsys, log_level, tmp_path):
    log_level(logging.WARNING)
    cfg = load_config("demo", overrides={"plugins.filter": "lg3", "plugins.agg": "scaffold", "plugins.align": "cai50"})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    print_summary(cfg, fake_summary(), "abc123", uri)  # a run the store does not know: last-round filter counts
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[1].startswith("SAFETY (strict refusal rule, 95% CI)")
    assert lines[2].startswith("harmful requests refused (AdvBench, n=64") and "0.656 [" in lines[2]
    assert lines[3].startswith("benign requests refused (over-refusal, n=32")
    assert lines[4].startswith("refusal discrimination") and lines[4].count("[") == 2
    text = "\n".join(" ".join(line.split()) for line in lines)
    assert "filter lg3" in text and "dropped 12 of 32 client samples in the last round" in text and "recall 0.750" in text
    assert "aggregator scaffold c_norm 0.01" in text and "control_variate_bytes" not in text
    assert "aligner cai50 dpo_steps 25, pairs 40" in text
    assert "advbench harmless, openfedllm rule (n=64)" in text  # the paper's rule stays, labelled, below
    assert "train/loss" not in text and "add -v to list them" in text
    assert f"harness leaderboard --tracking-uri {uri}" in text and "abc123" in text


def test_verbose_summary_lists_every_final_metric(capsys, log_level):
    log_level(logging.INFO)
    print_summary(load_config("demo"), fake_summary(), None, "sqlite:///never-opened.db")  # no run id: no store read
    out = capsys.readouterr().out
    assert "ALL FINAL METRICS" in out and "train/loss" in out and "add -v" not in out


def test_headline_rule_is_a_known_rule():
    from harness.evals.refusal import RULES

    assert discrimination.HEADLINE_RULE in RULES


def test_no_filter_says_every_sample_was_kept(capsys, log_level):
    log_level(logging.WARNING)
    print_summary(load_config("demo"), fake_summary(), None, "sqlite:///never-opened.db")
    out = " ".join(capsys.readouterr().out.split())
    assert "filter none every client sample kept (20 in the last round)" in out and "precision" not in out
