"""`fedyogi`: server Yogi on the mean client delta (Reddi et al. 2021): v ← v − (1−β2) Δ² sign(v − Δ²)."""

from __future__ import annotations

import torch

from harness.default_plugins.aggregators.server_optimizer import AdaptiveServerOptimizer


class FedYogi(AdaptiveServerOptimizer):
    name = "fedyogi"

    def second_moment(self, v, d2):
        return v - (1 - self.beta2) * d2 * torch.sign(v - d2)
