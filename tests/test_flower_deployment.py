"""The Deployment Engine example as documented (examples/flower, docs/flower.md): a SuperLink and 3 SuperNodes
on 127.0.0.1 with TLS from ``make_certs.sh``/``start_local.sh``, ``flwr run . harness-local``; the run
finishes in MLflow with the local engine's names and the same (bit-identical) adapter and metrics."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from harness.cli import main
from harness.tracking import default_tracking_uri
from tests.helpers import free_port

pytestmark = pytest.mark.flower

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flower"
BIN = Path(sys.executable).parent


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the SuperLink did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def only_run(out: Path, experiment: str):
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    history = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)] for k in run.data.metrics}
    adapter = load_file(str(out / "runs" / run.info.run_name / "final_adapter" / "adapter_model.safetensors"))
    return run, history, adapter


@pytest.mark.slow
def test_deployment_example_runs_over_tls_and_matches_the_local_engine(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)
    subprocess.run(["bash", "make_certs.sh", "certs"], cwd=app, check=True, capture_output=True)
    port, node_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "FLWR_HOME": str(tmp_path / "flwr"),
           "SUPERLINK_PORT": str(port), "SUPERNODE_PORT": str(node_port)}
    (tmp_path / "flwr").mkdir()
    (tmp_path / "flwr" / "config.toml").write_text(
        f'[superlink]\ndefault = "harness-local"\n\n[superlink.harness-local]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{app / "certs" / "ca.crt"}"\n'
    )
    log = (tmp_path / "federation.log").open("w")
    federation = subprocess.Popen(["bash", "start_local.sh"], cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_for_port(port, 60)
        result = subprocess.run([str(BIN / "flwr"), "run", ".", "harness-local", "--stream"], cwd=app, env=env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        os.killpg(federation.pid, signal.SIGTERM)
        federation.wait(30)
        log.close()

    remote, remote_history, remote_adapter = only_run(app / "harness-runs", "fedllm-harness-flower")
    assert remote.info.status == "FINISHED", (tmp_path / "federation.log").read_text()[-3000:]
    assert remote.data.tags["harness.engine"] == "flower-deployment"
    local_out = tmp_path / "local"
    args = ["run", "--config", str(app / "harness.yaml"), "--output-dir", str(local_out), "--no-progress"]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    local, local_history, local_adapter = only_run(local_out, "fedllm-harness-flower")

    assert set(remote.data.params) == set(local.data.params) and set(remote_history) == set(local_history)
    for key, steps in local_history.items():
        if not key.startswith("time/") and key != "run/wall_seconds":
            assert remote_history[key] == steps, key
    assert remote_history["clients/trained"] == [(1, 3.0), (2, 3.0)]
    for name, tensor in local_adapter.items():
        assert torch.equal(remote_adapter[name], tensor), name
