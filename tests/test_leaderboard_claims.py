"""The paper's claims on a paper-table1 board: paired differences, p-values and verdicts from real MLflow runs."""

import json
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from harness.leaderboard import load_board, write_leaderboard
from harness.leaderboard.claims import claims_markdown, verdict
from harness.leaderboard.stats import PairedTest

NOW = int(time.time() * 1000)


def log_run(client, exp, filt, align, refusals, benign=None, pretrained=False, seed=0, extra=None, agg="fedavg",
            name=None):
    """A finished run (of the fedavg column by default; named ``name``): tags, pinned params (and ``extra`` ones),
    AdvBench (strict) and over-refusal items."""
    tags = {} if pretrained else {"harness.filter": filt, "harness.agg": agg, "harness.align": align}
    run_id = client.create_run(exp, start_time=NOW, tags={**tags, "harness.seed": str(seed)},
                               run_name=name).info.run_id
    params = {"model.name": "m", "preset": "repro", "data.source": "hh-rlhf"}
    if pretrained:
        params |= {"eval.adapter": "none (pretrained base)", "eval.standalone": "True"}  # as `harness eval` logs
    params |= extra or {}
    client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()])
    rows = [{"goal": f"g{i}", "response": "r", "refusal_strict": bool(v), "refusal_openfedllm": bool(v)}
            for i, v in enumerate(refusals)]
    client.log_text(run_id, "".join(json.dumps(r) + "\n" for r in rows), "round_001/advbench_responses.jsonl")
    metrics = {"advbench/harmless_rate_strict": sum(refusals) / len(refusals)}
    if benign is not None:
        rows = [{"key": f"k{i}", "refusal_strict": bool(v), "refusal_openfedllm": bool(v)} for i, v in enumerate(benign)]
        client.log_text(run_id, "".join(json.dumps(r) + "\n" for r in rows), "round_001/over_refusal_responses.jsonl")
        metrics["over_refusal/refusal_rate"] = metrics["over_refusal/refusal_rate_strict"] = sum(benign) / len(benign)
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, NOW, 1) for k, v in metrics.items()])
    client.set_terminated(run_id)


def new_store(tmp_path):
    """(uri, client, experiment id) of an empty sqlite store with the paper-table1 experiment."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("paper-table1", artifact_location=(tmp_path / "art").as_uri())


def build_board(tmp_path):
    """A paper-table1 board of four fedavg runs: pretrained, FL, FL + filter, FL + CAI."""
    uri, client, exp = new_store(tmp_path)
    log_run(client, exp, None, None, [1] * 40, pretrained=True)
    log_run(client, exp, "none", "none", [1] * 10 + [0] * 30, benign=[0] * 20)
    log_run(client, exp, "lg3", "none", [1] * 12 + [0] * 28, benign=[1] * 2 + [0] * 18)  # +2 goals: not significant
    log_run(client, exp, "none", "cai50", [1] * 40, benign=[1] * 20)  # safe, but refuses every benign prompt
    board = load_board("paper-table1")
    return board, write_leaderboard(board, uri, tmp_path / "board")


def test_claims_table_reads_paired_items(tmp_path):
    board, written = build_board(tmp_path)
    rows = written.rows
    text = claims_markdown(board, rows, "AdvBench", ["Over-refusal"])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "-0.750" in lines["FL on red data lowers safety"] and lines["FL on red data lowers safety"].endswith("**yes** |")
    assert "| -0.750 |" in lines["FL on red data lowers safety"]  # seed 0's own difference
    assert "+0.050" in lines["the filter raises safety"] and "not significant" in lines["the filter raises safety"]
    assert "+0.750" in lines["CAI raises safety"] and lines["CAI raises safety"].endswith("**yes** |")
    assert lines["filter + CAI beats the filter alone"].endswith("no data |")
    cost = next(line for line in text.splitlines() if line.startswith("| none / fedavg / cai50"))
    assert "+1.000" in cost and "mcnemar" in cost  # CAI's price: every benign prompt refused


def test_the_pretrained_model_pairs_with_every_seed_of_a_row(tmp_path):
    uri, client, exp = new_store(tmp_path)
    log_run(client, exp, None, None, [1] * 40, pretrained=True)  # one evaluation, tagged seed 0 like `harness eval`
    log_run(client, exp, "none", "none", [1] * 10 + [0] * 30, seed=0)
    log_run(client, exp, "none", "none", [1] * 30 + [0] * 10, seed=1)
    board = load_board("paper-table1")
    rows = write_leaderboard(board, uri, tmp_path / "board").rows
    line = next(x for x in claims_markdown(board, rows, "AdvBench", []).splitlines() if "lowers safety" in x)
    assert "80 pairs" in line and "| -0.750, -0.250 |" in line and line.endswith("**yes** |")


def test_the_pretrained_rows_eval_marker_is_no_setting(tmp_path):
    md = build_board(tmp_path)[1].markdown.read_text()
    assert "eval.standalone" not in md  # `harness eval` marks its run; eval.adapter in the Method already tells
    assert "* Setting: all rows share one setting apart from the method." in md
    pretrained = next(line for line in md.splitlines() if line.startswith("| none (pretrained base) |"))
    assert pretrained.split(" | ")[1].strip() == ""  # an empty Setting cell


def test_verdicts():
    assert verdict(PairedTest(0.2, 0.01, "mcnemar", 40), +1) == "**yes**"
    assert verdict(PairedTest(0.2, 0.01, "mcnemar", 40), -1).startswith("**no**")
    assert verdict(PairedTest(0.2, 0.3, "mcnemar", 40), +1).startswith("not significant")
    assert verdict(None, +1) == "no data"
    robust = verdict(PairedTest(0.2, 0.01, "mcnemar", 40), +1, {"0": 0.3, "1": 0.1, "2": 0.2})
    one_seed_against = verdict(PairedTest(0.2, 0.01, "mcnemar", 40), +1, {"0": 0.5, "1": 0.3, "2": -0.2})
    assert robust == "**yes**" and one_seed_against == "**no**: p < 0.05 pooled, but seed 2 has the opposite sign"


def test_refusal_discrimination_claims_and_the_helpful_mix_row(tmp_path):
    uri, client, exp = new_store(tmp_path)
    log_run(client, exp, "none", "none", [1] * 10 + [0] * 30, benign=[0] * 20)  # discrimination (0.25 + 1) / 2
    log_run(client, exp, "none", "cai50", [1] * 40, benign=[1] * 20)  # refuses everything: 0.5
    log_run(client, exp, "none", "cai50", [1] * 36 + [0] * 4, benign=[1] * 2 + [0] * 18,
            extra={"plugins.align_options.helpful": "demo"})  # (0.9 + 0.9) / 2
    board = load_board("paper-table1")
    written = write_leaderboard(board, uri, tmp_path / "board")
    assert [r.cells["Refusal discrimination"].mean for r in written.rows] == pytest.approx([0.9, 0.625, 0.5])
    text = claims_markdown(board, written.rows, "Refusal discrimination", ["AdvBench", "Over-refusal"])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "-0.125" in lines["CAI raises safety"] and "opposite sign" in lines["CAI raises safety"]  # refuse-all loses
    helpful = lines["CAI's helpful mix beats CAI alone"]
    assert "+0.400" in helpful and "paired-bootstrap" in helpful and helpful.endswith("**yes** |")
    cost = next(line for line in text.splitlines() if line.startswith("| none / fedavg / cai50 (plugins.align_options"
                                                                       ".helpful=demo)"))
    assert "+0.650" in cost and "+0.100" in cost  # against FL: AdvBench 0.9 - 0.25, over-refusal 0.1 - 0


def test_runs_logged_before_and_after_a_setting_existed_are_one_row(tmp_path):
    """A run from before privacy.* existed lacks those params; it ran as their defaults do, so it joins the row."""
    uri, client, exp = new_store(tmp_path)
    log_run(client, exp, "none", "none", [1] * 10, benign=[0] * 10, seed=0, extra={"federation.rounds": "3"})
    log_run(client, exp, "none", "none", [0] * 10, benign=[0] * 10, seed=1,
            extra={"federation.rounds": "3", "privacy.noise_multiplier": "0.0", "privacy.clip_norm": "None"})
    log_run(client, exp, "none", "none", [0] * 10, benign=[0] * 10, seed=0,
            extra={"federation.rounds": "3", "privacy.noise_multiplier": "1.0", "privacy.clip_norm": "1.3"})
    rows = write_leaderboard(load_board("paper-table1"), uri, tmp_path / "board").rows
    assert sorted((row.seeds, row.shown_setting) for row in rows) == [
        (["0"], "privacy.clip_norm=1.3, privacy.noise_multiplier=1.0"),
        (["0", "1"], "privacy.clip_norm=None, privacy.noise_multiplier=0.0")]


def test_a_setting_shows_set_plugin_options_not_empty_ones_or_score_caches(tmp_path):
    uri, client, exp = new_store(tmp_path)
    log_run(client, exp, "none", "cai50", [1] * 10, benign=[0] * 10,
            extra={"plugins.align_options": "{}", "plugins.filter_options.shared_scores": "/runs/a"})
    log_run(client, exp, "none", "cai50", [0] * 10, benign=[0] * 10,
            extra={"plugins.align_options.helpful": "demo", "plugins.filter_options.shared_scores": "/runs/b"})
    rows = write_leaderboard(load_board("paper-table1"), uri, tmp_path / "board").rows
    assert sorted(row.shown_setting for row in rows) == ["defaults", "plugins.align_options.helpful=demo"]
