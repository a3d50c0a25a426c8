"""`fedavg`: the sample-weighted average of client adapters (McMahan et al. 2017)."""

from __future__ import annotations

import torch

from harness.hookspecs import hookimpl
from harness.types import AggregateResult


def weighted_average(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("aggregation weights must sum to a positive number")
    names = states[0].keys()
    return {n: sum(s[n] * (w / total) for s, w in zip(states, weights)) for n in names}


class FedAvg:
    averages = True  # x' is the weighted mean of the client adapters: DP-FedAvg may wrap it (docs/privacy.md)

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        new = weighted_average([u.state for u in updates], [u.num_examples for u in updates])
        new = {n: t.to(global_state[n].dtype) for n, t in new.items()}
        return AggregateResult(state=new, metrics={"clients": float(len(updates))})
