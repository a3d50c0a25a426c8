"""Small builders shared by tests."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from harness.cli import main
from harness.config import RunConfig, load_config
from harness.default_plugins.aggregators.fedavg import FedAvg
from harness.hookspecs import hookimpl
from harness.engine import RoundEngine
from harness.runner import EngineOptions, local_engine, prepare
from harness.session import plugins
from harness.tracking import default_tracking_uri, find_run
from harness.types import RunSummary


def smoke_config(tmp_path, **overrides) -> RunConfig:
    """The smoke preset with its MLflow store and runs under ``tmp_path`` and no progress bars needed."""
    base = {"output_dir": str(tmp_path / "out"), "tracking.run_name": "test-run"}
    base.update(overrides)
    return load_config("smoke", overrides=base)


def run_tracked(cfg: RunConfig, *extra: object, resume: bool = False) -> RunSummary:
    """Run ``cfg`` on the local engine as ``harness run`` does (MLflow store in its output dir), with ``extra``
    plugins; ``resume`` continues the run named ``tracking.run_name`` from its newest checkpoint."""
    uri = default_tracking_uri(cfg.output_dir)
    run_id = find_run(uri, cfg.tracking.run_name).info.run_id if resume else None
    return prepare(cfg, uri, EngineOptions(progress=False, resume=resume), run_id, extra).start()


def untracked_engine(cfg: RunConfig, *extra: object, resume: bool = False) -> RoundEngine:
    """The local engine for ``cfg`` with its plugins and ``extra`` ones, without MLflow (engine tests)."""
    return local_engine(cfg, plugins(cfg, *extra), EngineOptions(progress=False, resume=resume))


def run_cli_on_engine(out: Path, engine: str, *args: str) -> None:
    """``harness run --preset smoke ARGS`` on ``engine`` (flower: 2 Ray workers), run name = the engine, into
    ``out``; the local engine with one torch thread, as in a Ray worker (tests/test_flower_engine.py says why)."""
    threads = torch.get_num_threads()
    if engine == "local":
        torch.set_num_threads(1)
    argv = ["run", "--preset", "smoke", *args, "--output-dir", str(out), "--run-name", engine, "--no-progress",
            "--engine", engine, "--flower-workers", "2"]
    try:
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output


def logged_run(out: Path):
    """The one MLflow run in ``out``'s store: the run, its metric histories ([(step, value)]) and final adapter."""
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
               for key in run.data.metrics}
    adapter = load_file(str(out / "runs" / run.info.run_name / "final_adapter" / "adapter_model.safetensors"))
    return run, history, adapter


def same_run_on_both_engines(tmp_path: Path, *args: str):
    """``harness run --preset smoke ARGS`` on the local and the Flower engine: both FINISHED with the same params
    (but paths and names), metric histories (but timings) and final adapter bits; the local run and its history."""
    run_cli_on_engine(tmp_path / "local", "local", *args)
    run_cli_on_engine(tmp_path / "flower", "flower", *args)
    local, local_history, local_adapter = logged_run(tmp_path / "local")
    flower, flower_history, flower_adapter = logged_run(tmp_path / "flower")
    assert flower.info.status == local.info.status == "FINISHED"
    assert {k for k in local.data.params if local.data.params[k] != flower.data.params.get(k)} == {
        "output_dir", "tracking.run_name"}
    untimed = {k: v for k, v in local_history.items() if not k.startswith("time/") and k != "run/wall_seconds"}
    assert untimed == {k: flower_history.get(k) for k in untimed}
    assert list(local_adapter) == list(flower_adapter)
    assert all(torch.equal(local_adapter[name], flower_adapter[name]) for name in local_adapter)
    return local, local_history


def free_port() -> int:
    """A local TCP port nothing listens on (right after this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FEDAVG_AGGREGATE = FedAvg.aggregate


@hookimpl
def aggregate_failing_in_round_2(self, server_round, global_state, updates, num_clients_total):
    """FedAvg's ``aggregate``, raising in round 2: ``monkeypatch.setattr(FedAvg, "aggregate", ...)`` for a plugin fault."""
    if server_round == 2:
        raise RuntimeError("injected aggregator fault")
    return FEDAVG_AGGREGATE(self, server_round, global_state, updates, num_clients_total)


class FailInRound:
    """A plugin that crashes local training in round ``n`` (a failure to ``--resume`` from)."""

    def __init__(self, n: int):
        self.n = n

    @hookimpl
    def local_grad_correction(self, client_id, server_round, params, global_state, fit_ins):
        if server_round == self.n:
            raise RuntimeError(f"simulated crash in round {self.n}")


class Tamper:
    """Rewrites one client's trained adapter in place: ``global + factor * (local - global)``, or NaN."""

    def __init__(self, clients, factor: float | None):
        self.clients, self.factor = set(clients), factor

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        if client_id in self.clients:
            for name, t in local_state.items():
                t.copy_(torch.full_like(t, float("nan")) if self.factor is None
                        else global_state[name] + self.factor * (t - global_state[name]))


def distance(a, b) -> float:
    return math.sqrt(sum(float((a[n] - b[n]).double().pow(2).sum()) for n in a))
