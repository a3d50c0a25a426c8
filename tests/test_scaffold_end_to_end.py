"""`harness run --filter none --agg scaffold --align none` on tiny-random, checked in MLflow and on disk."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.tracking import default_tracking_uri


@pytest.mark.slow
def test_scaffold_run_counts_control_variates_in_the_communication(tmp_path):
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--filter", "none", "--agg", "scaffold", "--align", "none",
            "--local-optimizer", "sgd", "--rounds", "2", "--output-dir", str(out), "--run-name", "sc",
            "--no-progress"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    adapter_bytes = 4 * int(run.data.params["run.adapter_parameters"])  # float32 LoRA weights, float32 c
    for key in ("comm/bytes_down", "comm/bytes_up"):
        history = client.get_metric_history(run.info.run_id, key)
        trained = client.get_metric_history(run.info.run_id, "clients/trained")
        assert [m.value for m in history] == [2 * adapter_bytes * t.value for t in trained]  # adapter + c / Δc_i
    control = client.get_metric_history(run.info.run_id, "agg/control_variate_bytes")
    assert [m.step for m in control] == [1, 2] and all(m.value == 2 * adapter_bytes * 2 for m in control)
    c_norm = client.get_metric_history(run.info.run_id, "agg/c_norm")
    assert all(m.value > 0 for m in c_norm)
    run_dir = out / "runs" / "sc"
    assert 2 <= len(list((run_dir / "scaffold").glob("client_*.safetensors"))) <= 4
    assert (run_dir / "final_adapter" / "adapter_model.safetensors").is_file()
