"""MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME are honoured when no flag names the store or the experiment
(flag > config file > environment > default) by `run`, `eval`, `suite` and `leaderboard`."""

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.cli.run import resolve_run_config
from harness.suite import Suite, SuiteSettings, experiment_name
from harness.tracking import default_tracking_uri, resolve_tracking_uri


@pytest.fixture()
def env(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'env-store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "env-exp")
    return uri


def run_config(config_file=None, **flags):
    return resolve_run_config(None, config_file, (), (), flags, {})


def test_precedence_flag_then_config_then_env_then_default(env, tmp_path, monkeypatch):
    assert resolve_tracking_uri(None, tmp_path) == env
    assert resolve_tracking_uri("sqlite:///flag.db", tmp_path) == "sqlite:///flag.db"
    assert run_config().tracking.experiment == "env-exp"
    assert run_config(experiment="flag-exp").tracking.experiment == "flag-exp"
    config = tmp_path / "c.yaml"
    config.write_text("tracking:\n  experiment: file-exp\n")
    assert run_config(str(config)).tracking.experiment == "file-exp"
    assert resolve_run_config(None, None, ("tracking.experiment=set-exp",), (), {}, {}).tracking.experiment == "set-exp"
    suite = Suite("s", "", "default", ())
    assert experiment_name(suite, SuiteSettings()) == "env-exp"
    assert experiment_name(suite, SuiteSettings(experiment="flag")) == "flag"
    from harness.cli.eval import eval_config

    cfg = eval_config("tiny-random", ("heldout-nll",), None, None, None, (), (), {}, {"tracking.experiment": None})
    assert cfg.tracking.experiment == "env-exp"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    assert resolve_tracking_uri(None, tmp_path) == default_tracking_uri(tmp_path)
    assert run_config().tracking.experiment == "fedllm-harness"
    assert experiment_name(suite, SuiteSettings()) == "s"


def test_run_and_leaderboard_use_the_env_store_and_experiment(env, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--preset", "smoke", "--rounds", "1", "--eval", "heldout-nll",
                                  "--eval-limit", "4", "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(env)
    exp = client.get_experiment_by_name("env-exp")
    assert exp is not None and len(client.search_runs([exp.experiment_id])) == 1
    assert not (tmp_path / "out" / "mlflow.db").exists()
    result = runner.invoke(main, ["leaderboard", "--out", str(tmp_path / "board")])
    assert result.exit_code == 0, result.output
    assert "1 rows (one per setting) from 1 finished runs" in result.output
