"""`none`: keep every sample (the FL row of the paper's table)."""

from harness.hookspecs import hookimpl
from harness.types import FilterVerdict


class NoFilter:
    @hookimpl
    def pre_local_train(self, client_id, samples, server_round):
        return FilterVerdict(keep=[True] * len(samples))
