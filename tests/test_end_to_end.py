"""A real 2-round run on tiny-random through the CLI, checked in the MLflow store it writes."""

from pathlib import Path

from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.tracking import default_tracking_uri

ROUND_METRICS = ["train/loss", "train/lr", "filter/kept", "filter/dropped", "comm/bytes_up", "comm/bytes_down",
                 "time/round_seconds", "time/train_step_seconds", "heldout/nll"]


def run_cli(out: Path, *extra: str) -> None:
    args = ["run", "--preset", "smoke", "--filter", "none", "--agg", "fedavg", "--align", "none",
            "--rounds", "2", "--output-dir", str(out), "--no-progress", *extra]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "FINISHED" in result.output


def only_run(out: Path):
    client = MlflowClient(default_tracking_uri(out))
    exp = client.get_experiment_by_name("fedllm-harness")
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def adapter_bytes(out: Path) -> bytes:
    (path,) = (out / "runs").glob("*/final_adapter/adapter_model.safetensors")
    return path.read_bytes()


def test_two_round_run_is_fully_logged(tmp_path):
    out = tmp_path / "out"
    run_cli(out, "--run-name", "e2e")
    client, run = only_run(out)
    assert run.info.status == "FINISHED" and run.info.run_name == "e2e"
    params = run.data.params
    assert params["federation.rounds"] == "2"
    assert params["plugins.agg"] == "fedavg"
    assert params["model.name"] == "tiny-random"
    assert params["model.target_modules"] == '["q_proj", "v_proj"]'
    assert int(params["run.harmful_samples"]) == round(int(params["data.num_samples"]) * 0.3)
    for key in ROUND_METRICS:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert steps == [1, 2], key
    kept = client.get_metric_history(run.info.run_id, "filter/kept")
    assert all(m.value > 0 for m in kept)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "final_adapter", "round_001", "round_002"} <= top
    adapter_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "final_adapter")}
    assert {"adapter_model.safetensors", "adapter_config.json"} <= adapter_files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in adapter_files)
    config_text = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))).read_text()
    assert "rounds: 2" in config_text
    assert (next((out / "runs").iterdir()) / "config.yaml").read_text() == config_text


def test_same_seed_same_adapter_bytes_other_seed_differs(tmp_path):
    run_cli(tmp_path / "a", "--seed", "7")
    run_cli(tmp_path / "b", "--seed", "7")
    run_cli(tmp_path / "c", "--seed", "8")
    assert adapter_bytes(tmp_path / "a") == adapter_bytes(tmp_path / "b")
    assert adapter_bytes(tmp_path / "a") != adapter_bytes(tmp_path / "c")


def test_training_changes_the_adapter_and_lowers_loss(tmp_path):
    out = tmp_path / "out"
    run_cli(out, "--local-steps", "8", "--set", "federation.lr=5e-3")
    client, run = only_run(out)
    loss = [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert loss[1] < loss[0]


def test_bad_model_path_is_a_clear_error(tmp_path):
    args = ["run", "--preset", "smoke", "--model", str(tmp_path / "missing-model"), "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception) + result.output


def test_piped_output_has_no_progress_bars_unless_asked(tmp_path):
    """Progress bars follow stderr: a pipe or a log file gets none (no `\\r` lines, no blank-line residue)."""
    import subprocess
    import sys

    def run(*extra: str) -> str:
        args = [sys.executable, "-m", "harness", "run", "--preset", "smoke", "--filter", "none", "--agg", "fedavg",
                "--align", "none", "--rounds", "1", "--output-dir", str(tmp_path / "out"), *extra]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stderr

    quiet = run()
    assert "step/s" not in quiet and "\r" not in quiet and "\n\n" not in quiet
    assert "step/s" in run("--progress")  # asked for: shown even on a pipe
