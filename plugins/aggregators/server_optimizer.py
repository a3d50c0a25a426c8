"""Shared base of the server-optimiser aggregators (fedavgm, fedadam, fedyogi, fedadagrad).

Each round the server treats the sample-weighted mean client change Δ = Σ n_i (y_i − x) / Σ n_i as a
pseudo-gradient and takes one optimiser step x ← x + update(Δ) (Reddi et al. 2021, Algorithm 2).
The step is always applied to the ``global_state`` the engine passes, which already holds any
``post_aggregate`` (alignment) change; the moments only ever see client deltas, so an alignment step
is neither amplified nor replayed by momentum (docs/aggregation.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.adapters import save_adapter
from harness.hookspecs import hookimpl
from harness.types import AdapterState, AggregateResult
from harness.default_plugins.aggregators.fedavg import weighted_average

Moments = dict[str, AdapterState]  # moment name ("m", "v") -> tensors by adapter name


def norm(state: AdapterState) -> float:
    return float(torch.sqrt(sum(t.double().pow(2).sum() for t in state.values())))


class ServerOptimizer:
    """An aggregator that steps a server optimiser on the mean client delta; subclasses define ``step``."""

    name = "server-optimizer"  # sub-folder of its checkpoint files

    def __init__(self) -> None:
        self.moments: Moments = {}

    def step(self, delta: AdapterState) -> AdapterState:
        """The server update for this round's mean delta (updates ``self.moments``)."""
        raise NotImplementedError

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        delta = weighted_average([u.delta(global_state) for u in updates], [u.num_examples for u in updates])
        update = self.step({n: d.float() for n, d in delta.items()})
        new = {n: (global_state[n].float() + update[n]).to(global_state[n].dtype) for n in global_state}
        metrics = {"clients": float(len(updates)), "delta_norm": norm(delta), "update_norm": norm(update)}
        return AggregateResult(state=new, metrics=metrics)

    @hookimpl
    def checkpoint_state(self, directory: Path) -> None:
        flat = {f"{moment}/{n}": t for moment, tensors in self.moments.items() for n, t in tensors.items()}
        save_adapter(flat, directory / self.name / "moments.safetensors")

    @hookimpl
    def restore_state(self, directory: Path) -> None:
        path = directory / self.name / "moments.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: the checkpoint has no {path.name}; was it written by another aggregator?")
        self.moments = {}
        for key, tensor in load_file(str(path)).items():
            moment, _, n = key.partition("/")
            self.moments.setdefault(moment, {})[n] = tensor


class AdaptiveServerOptimizer(ServerOptimizer):
    """FedAdagrad/FedAdam/FedYogi: m ← β1 m + (1−β1) Δ, v ← rule(v, Δ²), x ← x + η m / (√v + τ); v starts at τ².

    Defaults: β1 = 0.9, β2 = 0.99, τ = 1e-3 (Reddi et al. 2021); η = 1e-3 (OpenFedLLM's setting for LoRA,
    the paper tunes η per task).
    """

    def __init__(self, server_lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3):
        super().__init__()
        if server_lr <= 0 or tau <= 0:
            raise ValueError("server_lr and tau must be > 0")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError("beta1 and beta2 must be in [0, 1)")
        self.server_lr, self.beta1, self.beta2, self.tau = server_lr, beta1, beta2, tau

    def second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, delta: AdapterState) -> AdapterState:
        m = self.moments.setdefault("m", {})
        v = self.moments.setdefault("v", {})
        update = {}
        for n, d in delta.items():
            m[n] = self.beta1 * m.get(n, torch.zeros_like(d)) + (1 - self.beta1) * d
            v[n] = self.second_moment(v.get(n, torch.full_like(d, self.tau**2)), d * d)
            update[n] = self.server_lr * m[n] / (v[n].sqrt() + self.tau)
        return update
