"""`trimmed-mean`: coordinate-wise β-trimmed mean of the client adapters (Yin et al. 2018).

Per coordinate, the ⌊β·k⌋ smallest and ⌊β·k⌋ largest of the k client values are dropped and the rest
averaged (unweighted). ``beta`` must be in [0, 0.5); 0 is the plain mean.
"""

from __future__ import annotations

import math

from harness.hookspecs import hookimpl
from harness.types import AggregateResult
from harness.default_plugins.aggregators.robust import coordinate_trimmed_mean


class TrimmedMean:
    def __init__(self, beta: float = 0.1):
        if not 0 <= beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {beta}")
        self.beta = beta

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        trim = math.floor(self.beta * len(updates))
        state = coordinate_trimmed_mean(updates, global_state, trim)
        return AggregateResult(state, {"clients": float(len(updates)), "trimmed_per_side": float(trim)})
