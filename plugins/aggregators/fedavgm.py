"""`fedavgm`: FedAvg with server momentum (Hsu et al. 2019): v ← β v + Δ, x ← x + η v.

Δ is the sample-weighted mean client delta. Defaults β = 0.9, η = 1.0 as in the paper (the
effective server step is η / (1 − β); lower η to keep it near FedAvg's).
"""

from __future__ import annotations

import torch

from harness.types import AdapterState
from harness.default_plugins.aggregators.server_optimizer import ServerOptimizer


class FedAvgM(ServerOptimizer):
    name = "fedavgm"

    def __init__(self, server_lr: float = 1.0, momentum: float = 0.9):
        super().__init__()
        if server_lr <= 0 or not 0 <= momentum < 1:
            raise ValueError("server_lr must be > 0 and momentum in [0, 1)")
        self.server_lr, self.momentum = server_lr, momentum

    def step(self, delta: AdapterState) -> AdapterState:
        velocity = self.moments.setdefault("velocity", {})
        for n, d in delta.items():
            velocity[n] = self.momentum * velocity.get(n, torch.zeros_like(d)) + d
        return {n: self.server_lr * velocity[n] for n in delta}
