"""Issue #10, item 2: a plugin that raises is named (plugin and package), the MLflow run is marked FAILED
with the traceback, the last checkpoint stays intact and ``--resume`` ends with the uninterrupted result;
an aggregator's malformed result is rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.adapters import AdapterStateError
from harness.checkpoint import CheckpointStore
from harness.cli import main
from harness.hookspecs import hookimpl
from harness.tracking import default_tracking_uri
from harness.types import AggregateResult
from harness.default_plugins.aggregators.fedavg import FedAvg
from tests.helpers import aggregate_failing_in_round_2, run_tracked, smoke_config, untracked_engine

RUN = "fault-test"
FLAGS = ["--preset", "smoke", "--rounds", "3", "--local-optimizer", "sgd", "--set", "plugins.evals=[]",
         "--run-name", RUN, "--no-progress"]


def cli(*args: str):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def run_dir(out: Path) -> Path:
    return out / "runs" / RUN


def final_adapter(out: Path) -> bytes:
    return (run_dir(out) / "final_adapter" / "adapter_model.safetensors").read_bytes()


def only_run(out: Path):
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    return client, run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 3-round run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert cli(*FLAGS, "--output-dir", str(out)).exit_code == 0
    return out


@pytest.mark.slow
def test_plugin_exception_names_plugin_marks_run_failed_and_resume_matches(tmp_path, reference, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(FedAvg, "aggregate", aggregate_failing_in_round_2)
    failed = cli(*FLAGS, "--output-dir", str(out))
    monkeypatch.undo()

    assert failed.exit_code == 1
    client, run = only_run(out)
    assert ("plugin agg:fedavg (fedllm-harness " in failed.output and "raised in hook aggregate: "
            "RuntimeError: injected aggregator fault" in failed.output)
    assert f"harness run --resume {run.info.run_id}" in failed.output
    assert run.info.status == "FAILED"
    error = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    text = Path(error).read_text()
    assert "Traceback" in text and "injected aggregator fault" in text and "plugin agg:fedavg (fedllm-harness" in text
    assert CheckpointStore(run_dir(out)).load_latest().next_round == 2  # round 1 intact, nothing half-written

    resumed = cli("--resume", RUN, "--output-dir", str(out), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    client, run = only_run(out)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    assert final_adapter(out) == final_adapter(reference)


class FailAfterLoggingRound2:
    """Raises in on_round_end of round 2 after the MLflow tracker has logged the round."""

    @hookimpl(trylast=True)
    def on_round_end(self, server_round, metrics, artifacts):
        if server_round == 2:
            raise RuntimeError("injected on_round_end fault")


def run_in_process(out: Path, *extra, resume: bool = False):
    cfg = smoke_config(out.parent, **{"output_dir": str(out), "federation.rounds": 3, "plugins.evals": [],
                                      "federation.local_optimizer": "sgd", "tracking.run_name": RUN})
    return run_tracked(cfg, *extra, resume=resume)


@pytest.mark.slow
def test_round_already_logged_when_a_later_hook_failed_is_not_logged_twice(tmp_path, reference):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected on_round_end fault") as caught:
        run_in_process(out, FailAfterLoggingRound2())
    assert caught.value.plugin_fault.hook == "on_round_end"
    assert "FailAfterLoggingRound2 (not from an installed package)" in caught.value.plugin_fault.plugin
    client, run = only_run(out)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]

    assert run_in_process(out, resume=True).status == "FINISHED"
    for key in ("train/loss", "time/round_seconds", "comm/bytes_up"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key
    assert final_adapter(out) == final_adapter(reference)


class BadAggregator:
    """Answers the aggregate hook first, with a state broken by ``damage``."""

    def __init__(self, damage):
        self.damage = damage

    @hookimpl(tryfirst=True)
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        state = {n: t.clone() for n, t in global_state.items()}
        name = next(iter(state))
        state[name] = self.damage(state[name])
        return AggregateResult(state)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[:-1], r"has shape \(\d+, \d+\) dtype torch.float32, expected \(\d+, \d+\) torch.float32"),
    (lambda t: t.double(), "dtype torch.float64, expected"),
    (lambda t: t.fill_(float("nan")), r"non-finite values \(NaN/Inf\)"),
    (lambda t: t.fill_(float("inf")), r"non-finite values \(NaN/Inf\)"),
], ids=["shape", "dtype", "nan", "inf"])
def test_malformed_aggregator_result_is_rejected_and_the_checkpoint_kept(tmp_path, damage, message):
    cfg = smoke_config(tmp_path, **{"federation.rounds": 1, "federation.local_steps": 1, "plugins.evals": []})
    engine = untracked_engine(cfg, BadAggregator(damage))
    with pytest.raises(AdapterStateError, match=f"aggregator 'fedavg': .*{message}"):
        engine.run()
    checkpoint = engine.checkpoints.load_latest()
    assert checkpoint.next_round == 1
    assert all(torch.isfinite(t).all() for t in checkpoint.global_state.values())


# -- issue #19 items 1 and 6: writes into read-only state, non-finite adapters, SystemExit, on_run_end ------------

@hookimpl
def configure_fit_writing_nan(self, server_round, client_id, global_state):
    for t in global_state.values():
        t.fill_(float("nan"))


def all_checkpoints_finite(out: Path) -> bool:
    store = CheckpointStore(run_dir(out))
    return all(torch.isfinite(t).all() for d in store.complete() for t in store.load(d).global_state.values())


@pytest.mark.slow
def test_a_plugin_writing_nan_into_the_read_only_global_state_fails_the_run_naming_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(FedAvg, "configure_fit", configure_fit_writing_nan, raising=False)
    failed = cli(*FLAGS, "--output-dir", str(out))
    monkeypatch.undo()

    assert failed.exit_code == 1
    assert ("plugin agg:fedavg (fedllm-harness " in failed.output and "raised in hook configure_fit: "
            "ReadOnlyStateError: wrote into the read-only global_state" in failed.output)
    assert "Traceback" not in failed.output
    client, run = only_run(out)
    assert run.info.status == "FAILED"
    assert CheckpointStore(run_dir(out)).complete() and all_checkpoints_finite(out)  # round 0's, finite
    assert not (run_dir(out) / "final_adapter").exists()


class WritesIntoGlobalState:
    """Answers ``aggregate`` correctly but scribbles on the read-only global_state first."""

    @hookimpl(tryfirst=True)
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        result = AggregateResult({n: t.clone() for n, t in global_state.items()})
        next(iter(global_state.values())).add_(1.0)
        return result


class NaNAligner:
    @hookimpl(tryfirst=True)
    def post_aggregate(self, server_round, model):
        from harness.types import AlignResult

        return AlignResult({n: torch.full_like(t, float("nan")) for n, t in model.adapter_state().items()})


@pytest.mark.parametrize("plugin, error, message", [
    (WritesIntoGlobalState(), "ReadOnlyStateError", "wrote into the read-only global_state"),
    (NaNAligner(), AdapterStateError, r"aligner 'none': .* non-finite values"),
], ids=["write-in-aggregate", "nan-aligner"])
def test_server_side_faults_fail_before_the_round_is_checkpointed_and_name_the_plugin(tmp_path, plugin, error, message):
    from harness.adapters import ReadOnlyStateError

    error = ReadOnlyStateError if error == "ReadOnlyStateError" else error
    cfg = smoke_config(tmp_path, **{"federation.rounds": 1, "federation.local_steps": 1, "plugins.evals": []})
    engine = untracked_engine(cfg, plugin)
    with pytest.raises(error, match=message) as caught:
        engine.run()
    assert type(plugin).__name__ in caught.value.plugin_fault.plugin
    assert engine.checkpoints.load_latest().next_round == 1
    assert all(torch.isfinite(t).all() for t in engine.checkpoints.load_latest().global_state.values())


@hookimpl
def aggregate_exiting_0(self, server_round, global_state, updates, num_clients_total):
    raise SystemExit(0)


@hookimpl
def aggregate_interrupting(self, server_round, global_state, updates, num_clients_total):
    raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("aggregate, fault", [
    (aggregate_exiting_0, "called sys.exit(0)"),
    # was: exit 130, "stopped by SIGINT ... could not be marked KILLED (None)", no plugin named, MLflow FAILED
    (aggregate_interrupting, "raised KeyboardInterrupt, though no Ctrl-C or signal arrived"),
], ids=["system-exit-0", "keyboard-interrupt-without-a-signal"])
def test_a_plugin_ending_the_process_is_a_plugin_fault_with_exit_1_naming_it(tmp_path, monkeypatch, aggregate, fault):
    out = tmp_path / "out"
    monkeypatch.setattr(FedAvg, "aggregate", aggregate)
    failed = cli(*FLAGS, "--output-dir", str(out))
    monkeypatch.undo()

    assert failed.exit_code == 1, failed.output
    assert ("plugin agg:fedavg (fedllm-harness " in failed.output and "raised in hook aggregate: "
            f"PluginExitError: {fault}" in failed.output)
    assert "SIGINT" not in failed.output and "Traceback" not in failed.output
    client, run = only_run(out)
    assert run.info.status == "FAILED"
    assert f"MLflow run {run.info.run_id} is marked FAILED" in failed.output
    assert f"harness run --resume {run.info.run_id}" in failed.output


@hookimpl
def on_run_end_failing(self, run, summary):
    raise RuntimeError("injected on_run_end fault")


@pytest.mark.slow
def test_on_run_end_failing_after_a_good_run_exits_1_and_the_run_stays_finished(tmp_path, reference, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(FedAvg, "on_run_end", on_run_end_failing, raising=False)
    result = cli(*FLAGS, "--output-dir", str(out))
    monkeypatch.undo()

    assert result.exit_code == 1
    assert ("plugin agg:fedavg (fedllm-harness " in result.output and "raised in hook on_run_end: "
            "RuntimeError: injected on_run_end fault" in result.output)
    assert "Traceback" not in result.output and "is FINISHED" in result.output
    client, run = only_run(out)
    assert run.info.status == "FINISHED"
    assert "on_run_end" in run.data.tags["harness.run_end_fault"]
    assert final_adapter(out) == final_adapter(reference)
