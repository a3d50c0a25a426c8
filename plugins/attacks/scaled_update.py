"""The built-in attacks' shared rule: a malicious client sends x + λ·(y_i − x) instead of its trained adapter y_i.

x is the global adapter the client started from. The malicious clients are 0..k−1, k = ``data.malicious_clients``
(read in ``on_run_start``; the config refuses an attack with k = 0); the honest clients' updates are left as they
are. The rewrite happens in ``client_fit_end``, in place on the adapter the client sends, before any other
plugin's ``client_fit_end`` (``tryfirst``): those (SCAFFOLD's control variate) see the update as sent.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl


class ScaledUpdate:
    """Rewrites each malicious client's update to λ times its trained delta, λ = ``multiplier``."""

    def __init__(self, multiplier: float):
        self.multiplier = multiplier
        self.data = None  # the run's DataConfig: who is malicious

    @hookimpl
    def on_run_start(self, run):
        self.data = run.config.data

    @hookimpl(tryfirst=True)
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        if self.data is not None and self.data.is_malicious(client_id):
            for name, y in local_state.items():
                x = global_state[name]
                y.sub_(x).mul_(self.multiplier).add_(x)
