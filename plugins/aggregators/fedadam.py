"""`fedadam`: server Adam on the mean client delta (Reddi et al. 2021): v ← β2 v + (1−β2) Δ²."""

from __future__ import annotations

from harness.default_plugins.aggregators.server_optimizer import AdaptiveServerOptimizer


class FedAdam(AdaptiveServerOptimizer):
    name = "fedadam"

    def second_moment(self, v, d2):
        return self.beta2 * v + (1 - self.beta2) * d2
