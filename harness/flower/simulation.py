"""Local multi-process runs on Flower's Simulation Engine (Ray backend): one virtual SuperNode per client."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from flwr.simulation import run_simulation

from harness.config import RunConfig
from harness.flower.client_app import client_app
from harness.flower.server_app import server_app
from harness.types import RunSummary
from harness.workspace import trained_clients


def backend_config(workers: int, gpus: int | None = None) -> dict:
    """``workers`` Ray actors of one CPU each; with ``gpus`` (default: the GPUs torch sees) each gets a whole GPU
    while there are enough (``workers`` <= ``gpus``: one client per GPU, in parallel), else an equal share.

    Ray gives each actor its GPU through ``CUDA_VISIBLE_DEVICES``, so ``model.device: auto`` lands on it.
    """
    if workers < 1:
        raise ValueError(f"the Flower simulation needs at least 1 worker, got {workers}")
    gpus = torch.cuda.device_count() if gpus is None else gpus
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": min(1.0, gpus / workers)},
        "init_args": {"num_cpus": workers, "num_gpus": gpus, "logging_level": logging.WARNING, "log_to_driver": False},
    }


def simulate(config: RunConfig, pm, workers: int = 2, progress: bool = False,
             client_plugins: Sequence[object] = (), resume: bool = False) -> RunSummary:
    """Run ``config`` with the server-side plugins in ``pm`` (tracker included) and clients in ``workers`` processes.

    ``client_plugins`` are registered on every client next to the configured filter, aggregator and attack. ``resume``
    continues the run from its newest checkpoint, as the local engine does.
    """
    outcome: list[RunSummary] = []
    run_simulation(server_app(config, pm, outcome, progress=progress, resume=resume), client_app(client_plugins),
                   num_supernodes=trained_clients(config), backend_config=backend_config(workers))
    if not outcome:
        raise RuntimeError("the Flower simulation ended without the ServerApp finishing the run")
    return outcome[0]
