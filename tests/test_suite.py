"""Suites: real tiny-random runs through the engine, resumption (finished runs reused), clear errors."""

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.suite import Suite, SuiteError, SuiteRow, SuiteSettings, finished_run, row_config, run_suite
from harness.models import SMOLLM2_SAFE
from harness.safe_base.load import adapter_digest
from harness.tracking import MODEL_DIGEST_TAG, _param_value, default_tracking_uri, provenance_tags

BOARD = """
name: tiny
experiments: [unused]
columns:
  - {name: NLL, metric: heldout/nll, better: lower}
  - {name: Round time, metric: time/round_seconds, reduce: mean}
sort: {column: NLL, order: ascending}
plots: {rounds: [train/loss]}
"""


@pytest.fixture()
def tiny_suite(tmp_path) -> Suite:
    board = tmp_path / "tiny.yaml"
    board.write_text(BOARD)
    rows = (SuiteRow("fl", "none", "fedavg", "none"),)
    return Suite("tiny", "one FL row", str(board), rows, ("heldout-nll",))


def settings(tmp_path, **extra) -> SuiteSettings:
    base = dict(preset="smoke", seeds=2, overrides={"federation.rounds": 1, "plugins.eval_limit": 4},
                output_dir=str(tmp_path / "out"))
    base.update(extra)
    return SuiteSettings(**base)


def all_runs(tmp_path):
    client = MlflowClient(default_tracking_uri(tmp_path / "out"))
    return client, client.search_runs([client.get_experiment_by_name("tiny").experiment_id])


def test_the_pretrained_row_gets_no_options_of_plugins_it_does_not_run(tmp_path, monkeypatch):
    """Its `harness eval` gets --set eval and model settings, not a filter's or aligner's options (before: they
    showed as the pretrained row's setting on the board)."""
    from harness.suite import evaluate_pretrained, paper_table1

    given = {"plugins.filter_options.force": True, "plugins.align_options.pairs": "cai.jsonl", "federation.rounds": 2}
    suite = paper_table1()
    cfg = row_config(suite, settings(tmp_path, seeds=1, overrides=given), suite.rows[0], 0, "sqlite://", ("advbench",))
    calls = []
    monkeypatch.setattr("harness.suite.subprocess.run", lambda args, **kw: calls.append(args) or
                        subprocess.CompletedProcess(args, 0, "", ""))
    evaluate_pretrained(cfg, given)
    sets = [calls[0][i + 1] for i, a in enumerate(calls[0]) if a == "--set"]
    assert sets == ["federation.rounds=2"]


@pytest.mark.slow
def test_second_call_runs_nothing_new_and_failed_runs_are_redone(tiny_suite, tmp_path):
    first = run_suite(tiny_suite, settings(tmp_path))
    assert [(r.row, r.seed, r.reused) for r in first.runs] == [("fl", 0, False), ("fl", 1, False)]
    (row,) = first.board.rows
    assert row.method == "none / fedavg / none" and row.seeds == ["0", "1"] and row.cells["NLL"].n == 2
    assert "none / fedavg / none" in first.board.markdown.read_text()

    second = run_suite(tiny_suite, settings(tmp_path))
    assert second.new_runs == 0 and [r.run_id for r in second.runs] == [r.run_id for r in first.runs]
    client, runs = all_runs(tmp_path)
    assert len(runs) == 2
    uri = default_tracking_uri(tmp_path / "out")
    changed = settings(tmp_path, overrides={"federation.rounds": 1, "federation.lr": 0.5})
    assert finished_run(client, row_config(tiny_suite, changed, tiny_suite.rows[0], 0, uri, tiny_suite.evals)) is None

    client.set_terminated(first.runs[1].run_id, status="FAILED")
    third = run_suite(tiny_suite, settings(tmp_path))
    assert [r.reused for r in third.runs] == [True, False]
    assert len(all_runs(tmp_path)[1]) == 3
    assert third.board.rows[0].runs[1].run_id == third.runs[1].run_id  # the failed run is not on the board


def test_a_row_that_fails_on_bad_data_is_a_suite_error_not_a_traceback(tiny_suite, tmp_path):
    """As `harness run` reports it: the message and exit 2 (before: the DataError's traceback and exit 1)."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"q{i}", "response": "a", "is_harmful": i % 2 == 0}) + "\n"
                            for i in range(8)))
    bad = settings(tmp_path, seeds=1, overrides={"federation.rounds": 1, "data.source": str(rows), "data.num_samples": 40})
    with pytest.raises(SuiteError, match=r"\[1/1\] tiny-smoke-fl-s0: mixture of 40 samples") as caught:
        run_suite(tiny_suite, bad)
    assert caught.value.exit_code == 2


def test_missing_plugins_are_all_named_before_anything_runs(tmp_path):
    suite = Suite("gap", "", "default", (SuiteRow("a", "no-such-filter", "fedavg"), SuiteRow("b", agg="no-such-agg")))
    with pytest.raises(SuiteError) as caught:
        run_suite(suite, settings(tmp_path))
    message = str(caught.value)
    assert "unknown filter plugin 'no-such-filter'" in message and "unknown agg plugin 'no-such-agg'" in message
    assert "installed agg plugins: " in message and "fedavg" in message
    assert not (tmp_path / "out").exists()


def test_unknown_row_lists_the_rows(tiny_suite, tmp_path):
    with pytest.raises(SuiteError, match="suite tiny has no row nope; rows: fl"):
        run_suite(tiny_suite, settings(tmp_path, rows=("nope",)))


def test_cli_errors_are_clear(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["suite", "paper-table2", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "pass --filter-model DIR" in result.output
    result = runner.invoke(main, ["suite", "paper-table1", "--row", "fl-fedavg", "--seeds", "0",
                                  "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--seeds must be >= 1" in result.output


def test_table1_filter_rows_use_the_given_guard(tmp_path):
    from harness.suite import paper_table1

    rows = {row.name: row for row in paper_table1("guards/g").rows}
    filtered = [name for name, row in rows.items() if row.filter == "lg3"]
    assert sorted(filtered) == ["fl+filter+cai-fedavg", "fl+filter+cai-scaffold", "fl+filter-fedavg", "fl+filter-scaffold"]
    assert all(rows[name].filter_options == {"model": "guards/g"} for name in filtered)
    cfg = row_config(paper_table1("guards/g"), settings(tmp_path, seeds=1), rows["fl+filter-scaffold"], 0, "sqlite://", ())
    shared = str(tmp_path / "out" / "filter-scores" / "seed-0")  # a seed's filter rows share their scores
    assert cfg.plugins.filter_options == {"model": "guards/g", "shared_scores": shared}
    assert cfg.plugins.agg == "scaffold"
    assert all(row.filter_options == {} for row in paper_table1().rows)
    seed1 = row_config(paper_table1(), settings(tmp_path, seeds=2), SuiteRow("f", "lg3"), 1, "sqlite://", ())
    assert seed1.plugins.filter_options == {"shared_scores": str(tmp_path / "out" / "filter-scores" / "seed-1")}


def test_options_given_for_every_row_reach_the_rows_whose_plugin_takes_them(tmp_path):
    """--set plugins.filter_options.force=true / plugins.align_options.data=DIR: every lg3 row gets force and every
    CAI row (the helpful one too) the data, under the row's own options; rows with no such plugin (none, oracle,
    which takes no options) get none of them instead of failing on them (before: dropped or refused)."""
    from harness.suite import paper_table1

    given = {"plugins.filter_options.force": True, "plugins.align_options.data": "cai-build"}
    suite = paper_table1("guards/g")
    cfgs = {row.name: row_config(suite, settings(tmp_path, seeds=1, overrides=given), row, 0, "sqlite://", ())
            for row in suite.rows if not row.pretrained}
    assert cfgs["fl+filter-fedavg"].plugins.filter_options["force"] is True
    assert cfgs["fl+filter-fedavg"].plugins.filter_options["model"] == "guards/g"
    assert cfgs["fl+oracle-fedavg"].plugins.filter_options == {} == cfgs["fl-fedavg"].plugins.filter_options
    assert cfgs["fl+cai-scaffold"].plugins.align_options == {"data": "cai-build"}
    assert cfgs["fl+cai+helpful-fedavg"].plugins.align_options == {"data": "cai-build", "helpful": "demo"}
    assert cfgs["fl-fedavg"].plugins.align_options == {} == cfgs["fl+filter-fedavg"].plugins.align_options


@pytest.mark.slow
def test_a_seeds_filter_rows_score_each_sample_once_with_the_same_verdicts(tmp_path, monkeypatch):
    from harness.guard.scoring import GuardScorer

    scored = []
    score = GuardScorer.score
    monkeypatch.setattr(GuardScorer, "score", lambda self, samples: scored.append(len(samples)) or score(self, samples))
    board = tmp_path / "tiny.yaml"
    board.write_text(BOARD)
    rows = (SuiteRow("filter-fedavg", "lg3", "fedavg"), SuiteRow("filter-scaffold", "lg3", "scaffold"))
    suite = Suite("tiny", "two filter rows", str(board), rows, ("heldout-nll",))
    options = dict(seeds=1, overrides={"federation.rounds": 2, "plugins.eval_limit": 4, "data.heldout_samples": 24})
    run_suite(suite, settings(tmp_path, rows=("filter-fedavg",), **options))
    first = sum(scored)
    assert first > 0
    report = run_suite(suite, settings(tmp_path, **options))
    assert sum(scored) == first  # the SCAFFOLD row found every score the FedAvg row had computed
    artifacts = tmp_path / "out" / "mlartifacts"
    verdicts = [[json.loads(f.read_text()) for f in sorted((artifacts / run.run_id).rglob("round_*/clients.json"))]
                for run in report.runs]
    assert verdicts[0] == verdicts[1] and len(verdicts[0]) == 2


def logged_without(tmp_path, *missing: str, model: str | None = None, row: SuiteRow = SuiteRow("fl")):
    """A FINISHED tiny run of ``row`` (and ``model`` where given) logged as if the config keys ``missing`` had not
    existed yet; its config and client."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = row_config(Suite("tiny", "", "b", (row,)), settings(tmp_path, seeds=1), row, 0, "sqlite://", ())
    cfg.model.name = model or cfg.model.name
    exp = client.create_experiment(cfg.tracking.experiment, artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp, run_name=cfg.tracking.run_name)
    for key, value in cfg.flat_params().items():
        if key not in missing:
            client.log_param(run.info.run_id, key, _param_value(value))
    client.set_terminated(run.info.run_id)
    return cfg, client, run.info.run_id


def test_a_run_logged_before_a_setting_existed_is_reused_only_while_the_setting_keeps_its_default(tmp_path):
    cfg, client, run_id = logged_without(tmp_path, "model.device")
    assert finished_run(client, cfg) == run_id
    cfg.model.device = "cpu"
    assert finished_run(client, cfg) is None


def test_a_filter_run_logged_before_suites_shared_filter_scores_is_reused(tmp_path):
    cfg, client, run_id = logged_without(tmp_path, "plugins.filter_options.shared_scores", row=SuiteRow("f", "lg3"))
    assert cfg.plugins.filter_options["shared_scores"] and finished_run(client, cfg) == run_id


def test_a_run_logged_before_gradient_clipping_is_not_reused_for_the_clipping_default(tmp_path):
    cfg, client, run_id = logged_without(tmp_path, "federation.max_grad_norm", "model.dtype")  # unclipped, fp32
    assert cfg.federation.max_grad_norm == 1.0 and finished_run(client, cfg) is None
    cfg.federation.max_grad_norm = None
    cfg.model.dtype = "float32"
    assert finished_run(client, cfg) == run_id


def test_a_run_logged_before_the_default_hook_timeout_is_reused(tmp_path):
    cfg, client, run_id = logged_without(tmp_path, "plugins.hook_timeout_s")
    client.log_param(run_id, "plugins.hook_timeout_s", "None")  # the default before issue #35: no limit
    assert cfg.plugins.hook_timeout_s == 86_400 and finished_run(client, cfg) == run_id  # a time limit measures nothing


def test_a_safe_base_run_is_reused_only_for_the_adapter_it_ran_with(tmp_path):
    cfg, client, run_id = logged_without(tmp_path, model=SMOLLM2_SAFE)
    assert finished_run(client, cfg) is None  # no digest tag: which adapter it ran is unknown
    shipped = adapter_digest(SMOLLM2_SAFE)
    assert shipped and provenance_tags(cfg)[MODEL_DIGEST_TAG] == shipped
    client.set_tag(run_id, MODEL_DIGEST_TAG, "0" * 12)  # a run of an earlier safety tuning under the same name
    assert finished_run(client, cfg) is None
    client.set_tag(run_id, MODEL_DIGEST_TAG, shipped)
    assert finished_run(client, cfg) == run_id


@pytest.mark.slow
def test_a_redone_row_sets_the_earlier_attempts_checkpoints_aside(tiny_suite, tmp_path):
    # an attempt with more checkpoints than a run keeps: the redo's own checkpoints must not be pruned for them
    three_rounds = settings(tmp_path, seeds=1, overrides={"federation.rounds": 3, "plugins.eval_limit": 4})
    first = run_suite(tiny_suite, three_rounds)
    run_dir = tmp_path / "out" / "runs" / "tiny-smoke-fl-s0"
    earlier = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(earlier) == 2  # the newest two of rounds 0..3
    MlflowClient(default_tracking_uri(tmp_path / "out")).set_terminated(first.runs[0].run_id, status="FAILED")

    again = run_suite(tiny_suite, three_rounds)
    assert again.new_runs == 1
    assert sorted(p.name for p in (run_dir / "checkpoints.superseded-1").iterdir()) == earlier
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == earlier  # the redo's own, complete


# The suite of `tiny_suite` in a process that SIGKILLs itself in round 2 (argv: board file, output dir).
KILLED_SUITE = textwrap.dedent("""
    import os, signal, sys
    from harness.default_plugins.aggregators.fedavg import FedAvg
    from harness.hookspecs import hookimpl
    from harness.suite import Suite, SuiteRow, SuiteSettings, run_suite

    aggregate = FedAvg.aggregate

    @hookimpl
    def killing(self, server_round, global_state, updates, num_clients_total):
        if server_round == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return aggregate(self, server_round, global_state, updates, num_clients_total)

    FedAvg.aggregate = killing
    suite = Suite("tiny", "", sys.argv[1], (SuiteRow("fl", "none", "fedavg", "none"),), ("heldout-nll",))
    run_suite(suite, SuiteSettings(preset="smoke", seeds=1, output_dir=sys.argv[2],
                                   overrides={"federation.rounds": 3, "plugins.eval_limit": 4}))
""")


@pytest.mark.slow
def test_a_row_stopped_mid_run_continues_from_its_checkpoint_in_the_same_mlflow_run(tiny_suite, tmp_path):
    three_rounds = dict(seeds=1, overrides={"federation.rounds": 3, "plugins.eval_limit": 4})
    run_suite(tiny_suite, settings(tmp_path / "reference", **three_rounds))  # the uninterrupted run
    killed = subprocess.run([sys.executable, "-c", KILLED_SUITE, tiny_suite.board, str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    client, (stopped,) = all_runs(tmp_path)
    assert stopped.info.status == "RUNNING"

    lines = []
    again = run_suite(tiny_suite, settings(tmp_path, **three_rounds), echo=lines.append)
    assert [r.run_id for r in again.runs] == [stopped.info.run_id] and "continuing stopped run" in lines[0]
    client, (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["harness.resumed_at_round"] == "2"
    adapter = "runs/tiny-smoke-fl-s0/final_adapter/adapter_model.safetensors"
    assert (tmp_path / "out" / adapter).read_bytes() == (tmp_path / "reference" / "out" / adapter).read_bytes()
