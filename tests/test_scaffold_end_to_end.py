"""`harness run --filter none --agg scaffold --align none` on tiny-random, checked in MLflow and on disk."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.tracking import default_tracking_uri


@pytest.mark.slow
def test_scaffold_run_counts_control_variates_in_the_communication_and_logs_the_correction_ratio(tmp_path):
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--filter", "none", "--agg", "scaffold", "--align", "none",
            "--rounds", "2", "--output-dir", str(out), "--run-name", "sc",
            "--no-progress"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    adapter_bytes = 4 * int(run.data.params["run.adapter_parameters"])  # float32 LoRA weights, float32 c
    for key in ("comm/bytes_down", "comm/bytes_up"):
        history = client.get_metric_history(run.info.run_id, key)
        trained = client.get_metric_history(run.info.run_id, "clients/trained")
        ratio_bytes = 4 if key == "comm/bytes_up" else 0  # the client's float32 correction_to_update
        assert [m.value for m in history] == [(2 * adapter_bytes + ratio_bytes) * t.value for t in trained]
    control = client.get_metric_history(run.info.run_id, "agg/control_variate_bytes")
    assert [m.step for m in control] == [1, 2] and all(m.value == 2 * adapter_bytes * 2 for m in control)
    c_norm = client.get_metric_history(run.info.run_id, "agg/c_norm")
    assert all(m.value > 0 for m in c_norm)
    # AdamW (the default) -> post-step correction: none in round 1, then on the scale of Adam's own steps
    ratio = [m.value for m in client.get_metric_history(run.info.run_id, "agg/correction_to_update")]
    assert ratio[0] == 0.0 and 0.05 < ratio[1] < 5, ratio
    run_dir = out / "runs" / "sc"
    assert 2 <= len(list((run_dir / "scaffold").glob("client_*.safetensors"))) <= 4
    assert (run_dir / "final_adapter" / "adapter_model.safetensors").is_file()
