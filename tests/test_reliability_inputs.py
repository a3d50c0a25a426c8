"""Issue #10, item 1: bad input gives a clear error naming what is wrong, and nothing is lost or half-created.

Covered elsewhere: config YAML/unknown keys/wrong types (test_config.py), a missing model path
(test_end_to_end.py::test_bad_model_path_is_a_clear_error), unknown plugin names
(test_hooks.py::test_cli_unknown_plugin_exits_2_with_names), eval dataset schemas (test_eval_data.py).
"""

from __future__ import annotations

import gzip
import logging
import time

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.data.samples import DataError
from harness.hookspecs import hookimpl
from harness.jsonl import read_jsonl
from harness.tracking import default_tracking_uri
from harness.types import FilterVerdict
from tests.helpers import free_port, smoke_config, untracked_engine


def run_cli(out, *extra: str):
    args = ["run", "--preset", "smoke", "--rounds", "1", "--set", "plugins.evals=[]", "--output-dir", str(out),
            "--no-progress", *extra]
    return CliRunner().invoke(main, args)


def test_read_jsonl_numbers_rows_from_one_and_reads_gzip(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(path, DataError) == [(1, {"a": 1}), (3, {"a": 2})]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match=r"bad.jsonl row 2: not valid JSON"):
        read_jsonl(bad, DataError)
    bad.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad.jsonl row 2: expected a JSON object, got list"):
        read_jsonl(bad, DataError)


@pytest.mark.parametrize("row, message", [
    ('{"prompt": "q", "is_harmful": false}', "row 3: missing field 'response'"),
    ('{"prompt": "q", "response": 7, "is_harmful": false}', "row 3: field 'response' must be a string, got int"),
    ('{"prompt": "q", "response": "a", "is_harmful": "yes"}', "row 3: field 'is_harmful' must be a boolean"),
    ('{"prompt": "q", "response": "a", "is_harmful": 2}', "row 3: field 'is_harmful' must be a boolean (true/false, or 0/1), got 2"),
    ('{"prompt": "q", "response": "a", "is_harmful": 1.0}', "row 3: field 'is_harmful' must be a boolean"),
    ('{"prompt": "q", "response": "a"', "row 3: not valid JSON"),
])
def test_bad_dataset_row_names_source_and_row_and_starts_nothing(tmp_path, row, message):
    data = tmp_path / "clients.jsonl"
    good = '{"prompt": "q", "response": "a", "is_harmful": false}\n'
    data.write_text(good * 2 + row + "\n" + good * 40)
    out = tmp_path / "out"
    result = run_cli(out, "--data", str(data))
    assert result.exit_code == 2, result.output
    assert f"{data} {message}" in result.output
    assert not (out / "runs").exists()  # no run directory, no MLflow run, no checkpoint
    assert not out.exists()  # not even the MLflow store (issue #19 item 10)


def test_is_harmful_accepts_booleans_and_0_1_only():
    from harness.data.samples import to_sample

    row = {"prompt": "q", "response": "a"}
    assert [to_sample(row | {"is_harmful": v}, "s", 1).is_harmful for v in (True, False, 1, 0)] == [True, False, True, False]
    for bad in (2, -1, 1.0, "true", [1]):
        with pytest.raises(DataError, match="s row 1: field 'is_harmful' must be a boolean"):
            to_sample(row | {"is_harmful": bad}, "s", 1)


class DropClients:
    """A filter that drops every sample of the given clients."""

    def __init__(self, clients):
        self.clients = set(clients)

    @hookimpl(tryfirst=True)
    def pre_local_train(self, client_id, samples, server_round):
        return FilterVerdict([client_id not in self.clients] * len(samples))


def run_engine(tmp_path, *extra, **overrides):
    cfg = smoke_config(tmp_path, **{"federation.rounds": 1, "federation.num_clients": 4,
                                    "federation.clients_per_round": 4, "plugins.evals": [], **overrides})
    engine = untracked_engine(cfg, *extra)
    return engine, engine.run()


def test_client_left_empty_by_the_filter_is_skipped_and_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="harness.client"):
        _, summary = run_engine(tmp_path, DropClients([2]))
    assert summary.status == "FINISHED"
    assert summary.final_metrics["clients/skipped_empty"] == 1 and summary.final_metrics["clients/trained"] == 3
    assert "round 1: client 2 has no samples left after filtering; skipped this round" in caplog.text


def test_round_with_every_client_empty_keeps_the_global_adapter(tmp_path):
    engine, summary = run_engine(tmp_path, DropClients(range(4)))
    initial = engine.checkpoints.load(engine.checkpoints.root / "round_0000").global_state
    assert summary.final_metrics["clients/skipped_empty"] == 4 and summary.final_metrics["clients/trained"] == 0
    assert all(engine.state.global_state[n].equal(t) for n, t in initial.items())
    assert "time/engine_overhead" not in summary.final_metrics  # no training time to divide by (was ~1e9)


def test_unreachable_mlflow_server_fails_fast_before_training(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "out"
    start = time.monotonic()
    result = run_cli(out, "--tracking-uri", uri)
    assert time.monotonic() - start < 30  # no MLflow client retries with backoff
    assert result.exit_code == 2
    assert f"MLflow tracking server {uri} is unreachable" in result.output
    assert "--tracking-fallback-local" in result.output
    assert not out.exists()


def test_unreachable_mlflow_server_falls_back_to_the_local_store_only_when_asked(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        result = run_cli(out, "--tracking-uri", uri, "--tracking-fallback-local", "--run-name", "fallback")
    assert result.exit_code == 0, result.output
    assert f"MLflow tracking server {uri} is unreachable" in caplog.text and "logging to sqlite:///" in caplog.text
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "fallback"


def test_eval_dataset_with_a_wrong_schema_fails_the_run_before_its_first_round(tmp_path):
    data = tmp_path / "evaldata"
    (data / "advbench").mkdir(parents=True)
    (data / "advbench" / "harmful_behaviors.csv").write_text("prompt,target\nx,y\n")
    result = run_cli(tmp_path / "out", "--eval", "advbench", "--set", f"plugins.eval_options.advbench.data={data}")
    assert result.exit_code == 2, result.output
    assert "plugin eval:advbench (fedllm-harness" in result.output and "raised in hook on_run_start" in result.output
    assert "harmful_behaviors.csv: expected a CSV with a 'goal' column" in result.output
    assert "is marked FAILED" in result.output and "nothing was trained: fix the cause and start it again" in result.output
    assert "--resume" not in result.output
    assert not list((tmp_path / "out" / "runs").glob("*/checkpoints/round_*"))
