"""What the server and every Flower node build alike for a run: its data split over clients and its model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config import RunConfig
from harness.data.draw import draw_run_data
from harness.data.partition import partition
from harness.model_handle import GlobalModel
from harness.models import attach_lora, load_base
from harness.types import ChatSample, RunInfo


def trained_clients(cfg: RunConfig) -> int:
    """How many clients the run trains: one for the centralized baseline, else ``federation.num_clients``."""
    return 1 if cfg.federation.centralized else cfg.federation.num_clients


@dataclass
class Workspace:
    """The client mixture (``samples``, split into ``client_samples``), the server-held ``heldout`` split and the
    resident model with a fresh LoRA."""

    samples: list[ChatSample]
    heldout: list[ChatSample]
    client_samples: list[list[ChatSample]]
    model: GlobalModel

    @classmethod
    def build(cls, cfg: RunConfig) -> Workspace:
        """The run's data and model; ``federation.centralized``: one client holding the union of the clients'
        samples (in client order)."""
        fed, data = cfg.federation, cfg.data
        torch.manual_seed(fed.seed)
        samples, heldout = draw_run_data(cfg)
        parts = partition(samples, fed.num_clients, data.partition, data.dirichlet_alpha, fed.seed,
                          data.red_placement, data.malicious_clients, data.malicious_red_share)
        if fed.centralized:
            parts = [[i for part in parts for i in part]]
        base, tokenizer = load_base(cfg.model)
        model = GlobalModel(attach_lora(base, cfg.model, fed.seed), tokenizer, cfg.model.max_length)
        return cls(samples, heldout, [[samples[i] for i in part] for part in parts], model)

    def run_info(self, cfg: RunConfig, run_name: str, run_dir: Path, engine: str,
                 resume_round: int | None = None) -> RunInfo:
        """What ``on_run_start``/``on_run_end`` get: the run's identity and its flattened parameters."""
        params = cfg.flat_params()
        params["run.num_samples"] = len(self.samples)
        params["run.harmful_samples"] = sum(bool(s.is_harmful) for s in self.samples)
        params["run.adapter_parameters"] = sum(p.numel() for p in self.model.params.values())
        params["run.dtype"] = str(next(iter(self.model.model.parameters())).dtype).removeprefix("torch.")
        params["run.heldout_samples"] = len(self.heldout)
        if cfg.data.malicious_clients:  # who holds the red data (docs/data.md)
            clients = range(len(self.client_samples))
            params["run.malicious_client_ids"] = [c for c in clients if cfg.data.is_malicious(c)]
            params["run.client_red_samples"] = [sum(bool(s.is_harmful) for s in c) for c in self.client_samples]
            params["run.client_samples"] = [len(c) for c in self.client_samples]
        return RunInfo(run_name, run_dir, cfg, params, resume_round, engine, list(self.heldout))
