"""Small builders shared by tests."""

from __future__ import annotations

import socket

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
