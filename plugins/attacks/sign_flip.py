"""`sign-flip`: the sign-flipping attack (Li et al. 2019, "RSA: Byzantine-Robust Stochastic Aggregation Methods for
Distributed Learning from Heterogeneous Datasets", AAAI: a Byzantine worker sends its message times a negative σ).

Rule: each malicious client sends x − γ·(y_i − x), its trained delta reversed and scaled by γ = ``factor``
(default 1; finite, > 0).
"""

from __future__ import annotations

from harness import finite_number
from harness.default_plugins.attacks.scaled_update import ScaledUpdate


class SignFlip(ScaledUpdate):
    def __init__(self, factor: float = 1.0):
        super().__init__(-finite_number("factor", factor, positive=True))
