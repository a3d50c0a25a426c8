"""`norm-bound`: norm bounding of client updates (Sun et al. 2019, "Can You Really Backdoor Federated Learning?").

Rule: each client's delta Δ_i = y_i − x (L2 over all adapter tensors together) becomes Δ_i / max(1, ‖Δ_i‖ / M)
with M = ``max_norm``, then the clipped adapters are averaged as FedAvg does (weighted by sample count). The
clip is the engine's ``federation.clip_update_norm`` one (:mod:`harness.update_hygiene`), here as the defense of
the aggregator. No default M: a fitting bound depends on the model and learning rate (``agg/mean_norm`` of a
run shows the clients' norms).

Metrics: ``agg/clipped`` (clients scaled down) and ``agg/mean_norm`` (their mean ‖Δ_i‖ before clipping).
"""

from __future__ import annotations

from harness import finite_number
from harness.hookspecs import hookimpl
from harness.update_hygiene import clip_update, update_norm
from harness.default_plugins.aggregators.fedavg import FedAvg


class NormBound(FedAvg):
    def __init__(self, max_norm: float):
        self.max_norm = finite_number("max_norm", max_norm, positive=True)

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        norms = [update_norm(u, global_state) for u in updates]
        clipped = [clip_update(u, global_state, self.max_norm, norm) for u, norm in zip(updates, norms)]
        result = super().aggregate(server_round, global_state, clipped, num_clients_total)
        result.metrics["clipped"] = float(sum(c is not u for c, u in zip(clipped, updates)))
        result.metrics["mean_norm"] = sum(norms) / len(norms)
        return result
