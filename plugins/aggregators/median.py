"""`median`: coordinate-wise median of the client adapters (Yin et al. 2018), robust to outlying clients.

Sample counts are ignored (a weighted median would let one large client decide alone).
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from harness.types import AggregateResult
from harness.default_plugins.aggregators.robust import coordinate_median


class Median:
    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        return AggregateResult(coordinate_median(updates, global_state), {"clients": float(len(updates))})
