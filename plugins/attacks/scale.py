"""`scale`: model replacement by boosting (Bagdasaryan et al. 2020, "How To Backdoor Federated Learning", AISTATS;
Bhagoji et al. 2019, "Analyzing Federated Learning through an Adversarial Lens", ICML: explicit boosting).

Rule: each malicious client sends x + γ·(y_i − x), its trained delta boosted by γ = ``factor`` (default 10; finite,
not 0). With n clients averaged, γ ≈ n lets one client replace the global model with its own.
"""

from __future__ import annotations

from harness import finite_number
from harness.default_plugins.attacks.scaled_update import ScaledUpdate


class Scale(ScaledUpdate):
    def __init__(self, factor: float = 10.0):
        super().__init__(finite_number("factor", factor))
