"""DP-FedAvg: client-level differential privacy (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models", ICLR), run as Flower's fixed-clipping wrappers run it, around any aggregator that averages.

Per round r, with m = ``federation.clients_per_round`` sampled of N clients, σ = ``privacy.noise_multiplier``
and C = ``privacy.clip_norm`` (docs/privacy.md):

1. clip: each client delta Δ_i = y_i − x is scaled to ‖Δ_i‖ ≤ C, by the server (``clipping: server``) or by
   the client before it sends it (``clipping: client``, :func:`clip_on_client`);
2. average: the aggregator (its class declares ``averages = True``) gets every update with ``num_examples = 1``,
   so it takes the unweighted mean of the m' updates that arrived;
3. fixed denominator: that mean is rescaled to (1/m) Σ Δ_i (a client that sent nothing counts as Δ_i = 0), so
   one client moves the result by at most C/m;
4. noise: x' = x + (1/m) Σ Δ_i + N(0, (σ C / m)² I), drawn from a generator seeded by (run seed, r), so a
   resumed run draws what an uninterrupted one does;
5. account: one Poisson-subsampled Gaussian step (σ, q = m/N) per round in Opacus's RDP accountant; ε at δ.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from harness.config import FederationConfig, PrivacyConfig
from harness.types import AdapterState, ClientUpdate
from harness.update_hygiene import clip_update

NOISE_STREAM = 0xD9FEDA  # the noise generator's seed is (run seed, round, this): apart from every other stream


def clip_on_client(update: ClientUpdate, global_state: AdapterState, cfg: PrivacyConfig,
                   metrics: dict[str, float]) -> ClientUpdate:
    """Client-side clipping (``privacy.clipping: client``): the client's own delta clipped to C before it is sent,
    counted in ``privacy/clipped``; any other setting returns ``update`` as it is."""
    if cfg.clip_norm is None or cfg.clipping != "client":
        return update
    clipped = clip_update(update, global_state, cfg.clip_norm)
    metrics["privacy/clipped"] += clipped is not update
    return clipped


class RoundAccountant:
    """ε at δ after r rounds: Opacus's RDP accountant, one Poisson-subsampled Gaussian step (σ, q) per round.

    σ and q are fixed for a run (``--resume`` keeps the config), so the accountant's state is the number of rounds
    composed: a resumed run's accountant catches up to the round it continues at, and nothing is checkpointed.
    """

    def __init__(self, noise_multiplier: float, sample_rate: float, delta: float):
        from opacus.accountants import RDPAccountant  # extras; validate() refuses noise without it

        self.noise_multiplier, self.sample_rate, self.delta = noise_multiplier, sample_rate, delta
        self.rounds = 0
        self._rdp = RDPAccountant()

    def epsilon(self, rounds: int) -> float:
        """ε at δ once ``rounds`` rounds are composed (the accountant steps up to them)."""
        if rounds < self.rounds:
            raise ValueError(f"the accountant has composed {self.rounds} rounds; it cannot go back to {rounds}")
        for _ in range(rounds - self.rounds):
            self._rdp.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.rounds = rounds
        return self._rdp.get_epsilon(delta=self.delta)


class DPFedAvg:
    """The server's side of DP-FedAvg for one run; with ``privacy.clip_norm`` unset it changes nothing."""

    def __init__(self, cfg: PrivacyConfig, fed: FederationConfig):
        self.cfg, self.sampled, self.seed = cfg, fed.clients_per_round, fed.seed
        self.enabled = cfg.clip_norm is not None
        # Flower's compute_stdv: σ C / m
        self.noise_std = float((cfg.noise_multiplier * cfg.clip_norm) / self.sampled) if self.enabled else 0.0
        self.accountant = (RoundAccountant(cfg.noise_multiplier, self.sampled / fed.num_clients,
                                           cfg.delta_for(fed.num_clients))
                           if self.enabled and cfg.noise_multiplier > 0 else None)

    def prepare(self, updates: list[ClientUpdate], global_state: AdapterState,
                metrics: dict[str, float]) -> list[ClientUpdate]:
        """What the aggregator gets: each update clipped to C (server-side clipping, counted in
        ``privacy/clipped``), all with ``num_examples = 1`` (an unweighted mean)."""
        if not self.enabled:
            return updates
        if self.cfg.clipping == "server":
            clipped = [clip_update(u, global_state, self.cfg.clip_norm) for u in updates]
            metrics["privacy/clipped"] = float(sum(c is not u for c, u in zip(clipped, updates)))
            updates = clipped
        return [dataclasses.replace(u, num_examples=1) for u in updates]

    def release(self, server_round: int, state: AdapterState, before: AdapterState, arrived: int,
                metrics: dict[str, float]) -> AdapterState:
        """The round's new global adapter: the aggregate ``state`` of the ``arrived`` updates rescaled to the fixed
        denominator m and noised (``before``: the global adapter the round started from); logs ``privacy/*``."""
        if not self.enabled:
            return state
        metrics.setdefault("privacy/clipped", 0.0)
        metrics["privacy/noise_std"] = self.noise_std
        if self.accountant is not None:
            metrics["privacy/epsilon"] = self.accountant.epsilon(server_round)
            metrics["privacy/delta"] = self.accountant.delta
        if arrived == self.sampled and self.noise_std == 0:
            return state
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, server_round, NOISE_STREAM]).generate_state(1, np.uint64)[0]))
        noise = {n: torch.randn(before[n].shape, generator=generator) * self.noise_std for n in sorted(before)}
        out = {}
        for n, x in before.items():
            mean = state[n].float()
            if arrived != self.sampled:
                mean = x.float() + (mean - x.float()) * (arrived / self.sampled)
            out[n] = (mean + noise[n]).to(x.dtype)
        return out
