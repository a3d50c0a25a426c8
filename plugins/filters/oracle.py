"""`oracle`: drop exactly the samples labelled red (the upper bound any safety filter can reach).

Not a method: it reads the data's own ``is_harmful`` labels, which a real client does not have. On a board it
marks how much safety a perfect filter would buy, so a real filter's row can be read as a share of that gap.
A sample with no label is an error (the bound needs labels).
"""

from harness.hookspecs import hookimpl
from harness.types import FilterVerdict


class OracleFilter:
    @hookimpl
    def pre_local_train(self, client_id, samples, server_round):
        unlabelled = [i for i, s in enumerate(samples) if s.is_harmful is None]
        if unlabelled:
            raise ValueError(f"the oracle filter needs is_harmful labels; client {client_id}'s sample "
                             f"{unlabelled[0]} has none")
        return FilterVerdict(keep=[not s.is_harmful for s in samples])
