"""`fedprox`: FedAvg aggregation with a proximal term μ/2 ‖w − x‖² in local training (Li et al. 2020).

The term's gradient μ (w − x) is added to each LoRA gradient before the optimizer step; x is the
global adapter the client started from. Default μ = 0.01 (OpenFedLLM).
"""

from __future__ import annotations

import torch

from harness.hookspecs import hookimpl
from harness.default_plugins.aggregators.fedavg import FedAvg


class FedProx(FedAvg):
    def __init__(self, mu: float = 0.01):
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        self.mu = mu
        self._anchor_key: tuple[int, int] | None = None
        self._anchor: dict[str, torch.Tensor] = {}

    @hookimpl
    def local_grad_correction(self, client_id, server_round, params, global_state, fit_ins):
        if self._anchor_key != (client_id, server_round):  # x on the parameters' device, once per client
            self._anchor = {n: global_state[n].to(p.device, p.dtype) for n, p in params.items()}
            self._anchor_key = (client_id, server_round)
        for n, p in params.items():
            if p.grad is not None:
                p.grad.add_(p.detach() - self._anchor[n], alpha=self.mu)
