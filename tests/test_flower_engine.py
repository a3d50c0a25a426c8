"""`--engine flower` (Flower Simulation Engine, 2 Ray workers) against the local engine, on tiny-random.

Tolerance: none. Every metric (except timings) and the final adapter must be bit-identical. The local run
uses one torch thread, as each Ray worker does (Ray sets OMP_NUM_THREADS to the worker's one CPU): with a
different thread count, matmul reductions may be split differently, and on larger models results then differ
in the last float32 bits (on tiny-random, 2 local threads were measured bit-identical too).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from harness.adapters import ReadOnlyStateError
from harness.cli import main
from harness.engine import RoundEngine
from harness.flower import simulate
from harness.hookspecs import hookimpl
from harness.registry import selection
from harness.registry import build_manager
from harness.tracking import MlflowTracker, default_tracking_uri
from helpers import logged_run, run_cli_on_engine, smoke_config

pytestmark = pytest.mark.flower
TIMINGS = ("time/",)


def run_cli(out: Path, engine: str, agg: str) -> None:
    run_cli_on_engine(out, engine, "--num-clients", "3", "--clients-per-round", "3", "--rounds", "2", "--filter",
                      "none", "--agg", agg, "--align", "none", "--local-optimizer",
                      "sgd" if agg == "scaffold" else "adamw")


@pytest.mark.slow
@pytest.mark.parametrize("agg", ["fedavg", "scaffold"])
def test_flower_engine_matches_the_local_engine(tmp_path, agg):
    run_cli(tmp_path / "local", "local", agg)
    run_cli(tmp_path / "flower", "flower", agg)
    local, local_history, local_adapter = logged_run(tmp_path / "local")
    flower, flower_history, flower_adapter = logged_run(tmp_path / "flower")

    assert flower.info.status == "FINISHED"
    assert set(flower.data.params) == set(local.data.params)  # same MLflow names
    assert set(flower_history) == set(local_history)
    differing = {k for k in local.data.params if local.data.params[k] != flower.data.params[k]}
    assert differing == {"output_dir", "tracking.run_name"}
    for key, steps in local_history.items():
        if key.startswith(TIMINGS) or key == "run/wall_seconds":
            continue
        assert [s for s, _ in flower_history[key]] == [s for s, _ in steps] == [1, 2], key
        assert [v for _, v in flower_history[key]] == [v for _, v in steps], key
    assert list(flower_adapter) == list(local_adapter)
    for name, tensor in local_adapter.items():
        assert torch.equal(flower_adapter[name], tensor), name
    if agg == "scaffold":  # c_i stayed on the client side: one file per client that trained
        assert len(list((tmp_path / "flower" / "runs" / "flower" / "scaffold").glob("client_*.safetensors"))) == 3


class FailingClient:
    """Client side: client 1 raises in round 1, after it was sampled and started."""

    @hookimpl(tryfirst=True)
    def pre_local_train(self, client_id, samples, server_round):
        if (client_id, server_round) == (1, 1):
            raise RuntimeError("disk full on client 1")


class NanClient:
    """Client side: client 2 sends a NaN adapter in round 2 (the server's update screening must drop it)."""

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        if (client_id, server_round) == (2, 2):
            for tensor in local_state.values():
                tensor.fill_(float("nan"))


class RoundMetrics:
    def __init__(self):
        self.rounds: list[tuple[dict, dict]] = []

    @hookimpl
    def on_round_end(self, server_round, metrics, artifacts):
        self.rounds.append((metrics, artifacts))


@pytest.mark.slow
def test_failing_and_nan_clients_are_reported_and_the_round_aggregates_the_others(tmp_path):
    cfg = smoke_config(tmp_path, **{"federation.num_clients": 3, "federation.clients_per_round": 3,
                                    "plugins.evals": []})
    recorder = RoundMetrics()
    tracker = MlflowTracker(default_tracking_uri(cfg.output_dir), cfg.tracking.experiment, cfg.output_dir)
    pm = build_manager(selection(cfg), extra=[tracker, recorder])
    summary = simulate(cfg, pm, workers=2, client_plugins=[FailingClient(), NanClient()])
    assert summary.status == "FINISHED" and summary.rounds_completed == 2
    (first, first_artifacts), (second, second_artifacts) = recorder.rounds
    assert first["clients/failed"] == 1 and first["clients/trained"] == 2
    failures = [c for c in json.loads(first_artifacts["clients.json"]) if "failed" in c]
    assert failures[0]["client_id"] == 1 and "disk full on client 1" in failures[0]["failed"]
    assert "clients/failed" not in second and first["clients/rejected_nonfinite"] == 0
    assert second["clients/rejected_nonfinite"] == 1 and second["clients/trained"] == 2
    rejected = [c["client_id"] for c in json.loads(second_artifacts["clients.json"]) if "rejected" in c]
    assert rejected == [2]
    adapter = load_file(str(summary.adapter_path / "adapter_model.safetensors"))
    assert all(torch.isfinite(t).all() for t in adapter.values())
    history = MlflowClient(tracker.uri).get_metric_history(tracker.run_id, "clients/failed")
    assert [(m.step, m.value) for m in history] == [(1, 1.0)]


class AlignerCrash:
    """Server side: an aligner that crashes in round 2 (after round 1 was checkpointed)."""

    @hookimpl
    def post_aggregate(self, server_round, model):
        if server_round == 2:
            raise RuntimeError("aligner crashed")


@pytest.mark.slow
def test_a_failed_flower_run_resumes_on_flower_and_ends_as_an_uninterrupted_run(tmp_path):
    overrides = {"federation.num_clients": 3, "federation.clients_per_round": 3, "plugins.agg": "scaffold",
                 "federation.local_optimizer": "sgd", "plugins.evals": []}
    local_cfg = smoke_config(tmp_path / "local", **overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray worker
    try:
        expected = load_file(str(RoundEngine(local_cfg, build_manager(selection(local_cfg)), progress=False).run()
                                 .adapter_path / "adapter_model.safetensors"))
    finally:
        torch.set_num_threads(threads)

    cfg = smoke_config(tmp_path / "flower", **overrides)
    tracker = MlflowTracker(default_tracking_uri(cfg.output_dir), cfg.tracking.experiment, cfg.output_dir)
    with pytest.raises(RuntimeError, match="aligner crashed\nplugin .*AlignerCrash .* raised in hook post_aggregate"):
        simulate(cfg, build_manager(selection(cfg), extra=[tracker, AlignerCrash()]), workers=2)
    client = MlflowClient(tracker.uri)
    assert client.get_run(tracker.run_id).info.status == "FAILED"
    assert client.get_run(tracker.run_id).data.tags["harness.engine"] == "flower"

    args = ["run", "--resume", tracker.run_id, "--output-dir", cfg.output_dir, "--no-progress"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["harness.resumed_at_round"] == "2"
    assert [m.step for m in client.get_metric_history(tracker.run_id, "clients/trained")] == [1, 2]
    resumed = load_file(str(Path(cfg.output_dir) / "runs" / cfg.tracking.run_name / "final_adapter"
                            / "adapter_model.safetensors"))
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name


class WritesIntoGlobalState:
    @hookimpl
    def configure_fit(self, server_round, client_id, global_state):
        for tensor in global_state.values():
            tensor.fill_(float("nan"))


@pytest.mark.slow
def test_a_plugin_writing_into_the_read_only_global_state_fails_a_flower_run_too(tmp_path):
    cfg = smoke_config(tmp_path, **{"federation.num_clients": 2, "federation.clients_per_round": 2,
                                    "plugins.evals": [], "federation.rounds": 1})
    with pytest.raises(ReadOnlyStateError, match="wrote into the read-only global_state"):
        simulate(cfg, build_manager(selection(cfg), extra=[WritesIntoGlobalState()]), workers=2)
