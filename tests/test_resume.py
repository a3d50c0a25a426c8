"""Resumable runs: kill -9 mid-round, resume, and end with the same adapter bytes in the same MLflow run."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file, save_file

from harness.cli import main
from harness.hookspecs import hookimpl
from harness.tracking import default_tracking_uri, find_run
from tests.helpers import FailInRound, run_tracked, smoke_config

RUN = "resume-test"
# LoRA on q_proj and o_proj: the adapter's model order (q before o) is not the sorted order a checkpoint reads back
SETTINGS = {"federation.rounds": 3, "federation.local_optimizer": "sgd", "plugins.evals": [],
            "model.target_modules": ["q_proj", "o_proj"], "tracking.run_name": RUN}
HARNESS = str(Path(sys.executable).parent / "harness")

# Runs the engine exactly as `harness run` does, plus a plugin that SIGKILLs the process in round 2,
# in the middle of the second client's local training (after the first client's c_i was written).
KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    from harness import registry
    from harness.registry import selection
    from harness.config import load_config
    from harness.engine import RoundEngine
    from harness.hookspecs import hookimpl
    from harness.tracking import MlflowTracker, default_tracking_uri

    class KillMidRound:
        calls = 0

        @hookimpl
        def local_grad_correction(self, client_id, server_round, params, global_state, fit_ins):
            if server_round == 2:
                self.calls += 1
                if self.calls == 5:
                    os.kill(os.getpid(), signal.SIGKILL)

    cfg = load_config("smoke", overrides=json.loads(sys.argv[1]))
    tracker = MlflowTracker(default_tracking_uri(cfg.output_dir), cfg.tracking.experiment, cfg.output_dir)
    pm = registry.build_manager(selection(cfg), extra=[tracker, KillMidRound()])
    RoundEngine(cfg, pm, progress=False).run()
""")


def run_in_process(out: Path, agg: str, *extra, resume: bool = False):
    cfg = smoke_config(out.parent, **{**SETTINGS, "output_dir": str(out), "plugins.agg": agg})
    return run_tracked(cfg, *extra, resume=resume)


def final_adapter(out: Path) -> bytes:
    return (out / "runs" / RUN / "final_adapter" / "adapter_model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def scaffold_reference(tmp_path_factory) -> Path:
    """An uninterrupted 3-round SCAFFOLD run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run_in_process(out, "scaffold")
    return out


@pytest.mark.slow
def test_kill_9_mid_round_then_resume_gives_the_same_adapter_and_one_mlflow_run(tmp_path, scaffold_reference):
    out = tmp_path / "out"
    overrides = {**SETTINGS, "output_dir": str(out), "plugins.agg": "scaffold", "tracking.run_name": RUN}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(overrides)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_dir = out / "runs" / RUN
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("round_*")) == ["round_0000", "round_0001"]
    assert not (run_dir / "final_adapter").exists()

    resumed = subprocess.run([HARNESS, "run", "--resume", RUN, "--output-dir", str(out), "--no-progress"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert final_adapter(out) == final_adapter(scaffold_reference)

    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["harness.resumed_at_round"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    assert run.info.run_id in resumed.stdout


def truncate(latest: Path) -> None:
    latest.write_bytes(latest.read_bytes()[:-7])


def fill_with_nan(latest: Path) -> None:
    """NaN in every tensor, with the manifest re-hashed: only the values are wrong (issue #35)."""
    save_file({name: torch.full_like(t, float("nan")) for name, t in load_file(latest).items()}, latest)
    manifest_path = latest.parent / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][latest.name] = {"size": latest.stat().st_size,
                                      "sha256": hashlib.sha256(latest.read_bytes()).hexdigest()}
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [(truncate, "is truncated"),
                                             (fill_with_nan, "has non-finite values (NaN/Inf)")])
def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage, message):
    reference = tmp_path / "reference"
    run_in_process(reference, "fedadam")
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_in_process(out, "fedadam", FailInRound(3))
    damage(out / "runs" / RUN / "checkpoints" / "round_0002" / "global.safetensors")
    with caplog.at_level(logging.WARNING, logger="harness.checkpoint"):
        summary = run_in_process(out, "fedadam", resume=True)  # NaN was: AdapterStateError, no fallback
    assert f"round_0002: global.safetensors {message}" in caplog.text
    assert summary.status == "FINISHED" and summary.rounds_completed == 3
    assert final_adapter(out) == final_adapter(reference)
    assert (out / "runs" / RUN / "checkpoints" / "corrupt-round_0002").is_dir()


class NameOrder:
    """Records the order of the global adapter's names that ``configure_fit`` gets, per round."""

    def __init__(self):
        self.seen: dict[int, list[str]] = {}

    @hookimpl
    def configure_fit(self, server_round, client_id, global_state):
        self.seen.setdefault(server_round, list(global_state))


def test_a_resumed_run_hands_plugins_the_adapter_in_its_live_name_order(tmp_path):
    fresh = NameOrder()
    run_in_process(tmp_path / "fresh", "fedavg", fresh)
    live = fresh.seen[1]
    assert live != sorted(live)  # the case a checkpoint read back in sorted order would get wrong
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_in_process(tmp_path / "out", "fedavg", FailInRound(2))
    resumed = NameOrder()
    run_in_process(tmp_path / "out", "fedavg", resumed, resume=True)
    assert resumed.seen == {2: live, 3: live}


def cli(*args: str):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def test_resume_refuses_config_flags(tmp_path):
    result = cli("--resume", RUN, "--agg", "fedavg", "--rounds", "5", "--output-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "drop --agg, --rounds" in result.output


def test_resume_of_an_unknown_run_names_it(tmp_path):
    result = cli("--resume", "no-such-run", "--output-dir", str(tmp_path))
    assert result.exit_code == 2 and "no MLflow run with id or name 'no-such-run'" in result.output


def test_resume_of_a_finished_run_is_refused(scaffold_reference):
    result = cli("--resume", RUN, "--output-dir", str(scaffold_reference))
    assert result.exit_code == 2 and "already finished; nothing to resume" in result.output


def test_a_run_resumes_on_the_engine_it_ran_on_and_another_engine_is_refused(tmp_path, scaffold_reference):
    client = MlflowClient(default_tracking_uri(scaffold_reference))
    run = find_run(default_tracking_uri(scaffold_reference), RUN)
    assert run.data.tags["harness.engine"] == "local"
    client.set_terminated(run.info.run_id, status="FAILED")  # as if it had crashed
    try:
        result = cli("--resume", RUN, "--engine", "flower", "--output-dir", str(scaffold_reference))
    finally:
        client.set_terminated(run.info.run_id, status="FINISHED")
    assert result.exit_code == 2
    assert f"run {run.info.run_id} ({RUN}) ran on --engine local; resume it there (drop --engine flower)" in result.output
    client.set_tag(run.info.run_id, "harness.engine", "flower-deployment")
    client.set_terminated(run.info.run_id, status="FAILED")
    try:
        result = cli("--resume", RUN, "--output-dir", str(scaffold_reference))
    finally:
        client.set_tag(run.info.run_id, "harness.engine", "local")
        client.set_terminated(run.info.run_id, status="FINISHED")
    assert result.exit_code == 2 and "ran on Flower's Deployment Engine; --resume continues" in result.output
