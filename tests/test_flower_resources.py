"""Simulation Engine resources: one client per GPU where there are enough, and clients of a round in several workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.registry import selection
from harness.flower.simulation import backend_config
from harness.hookspecs import hookimpl
from harness.registry import build_manager
from harness.tracking import MlflowTracker, default_tracking_uri
from helpers import smoke_config

pytestmark = pytest.mark.flower


@pytest.mark.parametrize(("workers", "gpus", "per_client"), [(4, 4, 1.0), (2, 8, 1.0), (4, 2, 0.5), (2, 0, 0.0)])
def test_each_worker_gets_a_whole_gpu_while_there_are_enough(workers, gpus, per_client):
    config = backend_config(workers, gpus=gpus)
    assert config["client_resources"] == {"num_cpus": 1, "num_gpus": per_client}
    assert config["init_args"]["num_gpus"] == gpus and config["init_args"]["num_cpus"] == workers


class WhoTrained:
    """Client side: appends ``round client pid`` for every client it trains to a shared file."""

    def __init__(self, path: Path):
        self.path = path

    @hookimpl
    def pre_local_train(self, client_id, samples, server_round):
        with self.path.open("a") as f:
            f.write(f"{server_round} {client_id} {os.getpid()}\n")


@pytest.mark.slow
def test_clients_of_a_round_train_in_several_ray_workers(tmp_path):
    from harness.flower import simulate

    cfg = smoke_config(tmp_path, **{"federation.num_clients": 4, "federation.clients_per_round": 4,
                                    "plugins.evals": []})
    tracker = MlflowTracker(default_tracking_uri(cfg.output_dir), cfg.tracking.experiment, cfg.output_dir)
    log = tmp_path / "trained.txt"
    summary = simulate(cfg, build_manager(selection(cfg), extra=[tracker]), workers=3, client_plugins=[WhoTrained(log)])
    assert summary.status == "FINISHED"
    rows = [line.split() for line in log.read_text().splitlines()]
    for server_round in ("1", "2"):
        clients = {c for r, c, _ in rows if r == server_round}
        workers = {pid for r, _, pid in rows if r == server_round}
        assert len(clients) == 4 and len(workers) >= 2, rows
    assert str(os.getpid()) not in {pid for *_, pid in rows}  # not in the driver
