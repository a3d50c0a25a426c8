"""`fedadagrad`: server Adagrad on the mean client delta (Reddi et al. 2021): v ← v + Δ² (β2 is unused)."""

from __future__ import annotations

from harness.default_plugins.aggregators.server_optimizer import AdaptiveServerOptimizer


class FedAdagrad(AdaptiveServerOptimizer):
    name = "fedadagrad"

    def __init__(self, server_lr: float = 1e-3, beta1: float = 0.9, tau: float = 1e-3):
        super().__init__(server_lr=server_lr, beta1=beta1, tau=tau)

    def second_moment(self, v, d2):
        return v + d2
