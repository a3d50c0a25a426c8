"""`multi-krum`: Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent", NeurIPS), robust to up to f Byzantine clients among the n of a round.

Rule: client i's score is the sum of the squared L2 distances from its delta Δ_i = y_i − x (all adapter tensors
together) to its n − f − 2 nearest neighbours' deltas; the m clients with the lowest scores are averaged,
unweighted, as in the paper (Flower's ``aggregate_krum`` weights them by sample count). m = 1 is Krum; the
default m = n − f. Equal scores go to the client listed first (the lower id).

The paper needs n > 2f + 2: a run whose ``clients_per_round`` cannot meet it, or is below m, is refused at
start. A round where fewer clients arrive (filtered to nothing, non-finite) still aggregates, with Flower's
fallback of max(1, n − f − 2) neighbours, m capped at n and the default m = max(1, n − f); it logs
``agg/below_bound`` = 1 there, as the f-client guarantee no longer holds.

Metrics: ``agg/selected`` (m) and ``agg/selected/client_<id>`` = 1 (averaged) or 0 (left out) for each client.
"""

from __future__ import annotations

import torch

from harness import InputError
from harness.hookspecs import hookimpl
from harness.types import AggregateResult
from harness.default_plugins.aggregators.fedavg import weighted_average
from harness.default_plugins.aggregators.robust import pairwise_squared_distances


def krum_scores(distances: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Per client: the sum of its ``neighbours`` smallest squared distances to the other clients."""
    others = distances.masked_fill(torch.eye(len(distances), dtype=torch.bool), float("inf"))
    return others.sort(dim=1).values[:, :neighbours].sum(dim=1)


class MultiKrum:
    def __init__(self, num_malicious: int = 1, num_selected: int | None = None):
        """``num_malicious``: f, the Byzantine clients to tolerate; ``num_selected``: m (default n − f)."""
        if isinstance(num_malicious, bool) or not isinstance(num_malicious, int) or num_malicious < 0:
            raise InputError(f"num_malicious must be an integer >= 0, got {num_malicious!r}")
        if num_selected is not None and (isinstance(num_selected, bool) or not isinstance(num_selected, int)
                                         or num_selected < 1):
            raise InputError(f"num_selected must be an integer >= 1 (1 is Krum), got {num_selected!r}")
        self.num_malicious, self.num_selected = num_malicious, num_selected

    @hookimpl
    def on_run_start(self, run):
        n, f = run.config.federation.clients_per_round, self.num_malicious
        if n <= 2 * f + 2:
            raise InputError(f"multi-krum with num_malicious={f} needs more than 2f + 2 = {2 * f + 2} clients per "
                             f"round (Blanchard et al. 2017); the run has clients_per_round={n}: lower "
                             "num_malicious or raise federation.clients_per_round")
        if self.num_selected is not None and self.num_selected > n:
            raise InputError(f"multi-krum: num_selected={self.num_selected} exceeds clients_per_round={n}")

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        n, f = len(updates), self.num_malicious
        neighbours = min(max(1, n - f - 2), n - 1)
        m = min(self.num_selected, n) if self.num_selected else max(1, n - f)
        scores = krum_scores(pairwise_squared_distances(updates, global_state), neighbours)
        chosen = set(torch.argsort(scores, stable=True)[:m].tolist())
        new = weighted_average([updates[i].state for i in sorted(chosen)], [1.0] * m)
        metrics = {"clients": float(n), "selected": float(m), "below_bound": float(n <= 2 * f + 2)}
        metrics |= {f"selected/client_{u.client_id}": float(i in chosen) for i, u in enumerate(updates)}
        return AggregateResult(state={k: t.to(global_state[k].dtype) for k, t in new.items()}, metrics=metrics)
