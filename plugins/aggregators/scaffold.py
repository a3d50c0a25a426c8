"""`scaffold`: SCAFFOLD on the LoRA weights (Karimireddy et al. 2020, Algorithm 1, option II).

Server: control variate c (float32, CPU). Client i: control variate c_i (float32, on disk, see
:mod:`plugins.aggregators.control_variates`). Per round, for each sampled client:

* ``configure_fit`` sends c (counted in the bytes sent down);
* each local step adds c − c_i to the gradient before the optimizer step (the correction is moved to
  the parameters' device for that client's training only);
* ``client_fit_end``: c_i⁺ = c_i − c + (x − y_i) / (K η_l) (option II, K steps at learning rate η_l),
  stores c_i⁺ and sends Δc_i = c_i⁺ − c_i (counted in the bytes sent up);
* ``aggregate``: x ← x + η_g · mean_i(y_i − x) (unweighted, as in the paper), c ← c + (|S|/N) · mean_i(Δc_i).

The correction is exact for SGD (``--local-optimizer sgd``). With AdamW the corrected gradient is
rescaled per coordinate by Adam's second moment, and (x − y_i)/(K η_l) measures Adam's normalised
steps rather than gradients, so c and c_i no longer estimate gradients: see docs/aggregation.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.adapters import num_bytes, save_adapter
from harness.hookspecs import hookimpl
from harness.types import AdapterState, AggregateResult, FitIns
from plugins.aggregators.control_variates import ControlVariateStore, flatten, unflatten

log = logging.getLogger(__name__)

C, DELTA_C = "c", "delta_c"  # the tensors sent down (FitIns) and up (ClientUpdate.extra)


class Scaffold:
    name = "scaffold"

    def __init__(self, server_lr: float = 1.0, state_dir: str | None = None):
        """``state_dir``: where the c_i files live (default: ``<run_dir>/scaffold``)."""
        if server_lr <= 0:
            raise ValueError(f"server_lr must be > 0, got {server_lr}")
        self.server_lr = server_lr
        self.store = ControlVariateStore(Path(state_dir)) if state_dir else None
        self.c: torch.Tensor | None = None  # flat float32, in the adapter's name order
        self._client: tuple[int, int] | None = None  # (client, round) of the cached c_i and correction
        self._c_i = torch.zeros(0)
        self._correction: list[torch.Tensor] = []

    def server_c(self, like: AdapterState) -> torch.Tensor:
        if self.c is None:
            self.c = torch.zeros(sum(t.numel() for t in like.values()), dtype=torch.float32)
        return self.c

    def _store(self) -> ControlVariateStore:
        if self.store is None:
            raise RuntimeError("scaffold has no state_dir: pass state_dir=... or run it inside the engine")
        return self.store

    def _load_client(self, client_id: int, server_round: int, c: torch.Tensor) -> torch.Tensor:
        if self._client != (client_id, server_round):
            self._c_i = self._store().load(client_id, c.numel())
            self._client, self._correction = (client_id, server_round), []
        return self._c_i

    @hookimpl
    def on_run_start(self, run) -> None:
        if self.store is None:
            self.store = ControlVariateStore(run.run_dir / "scaffold")
        if run.config.federation.local_optimizer != "sgd":
            log.warning("scaffold with local optimizer %r: the control-variate correction is exact only for "
                        "sgd (--local-optimizer sgd); see docs/aggregation.md", run.config.federation.local_optimizer)

    @hookimpl
    def configure_fit(self, server_round, client_id, global_state):
        return FitIns(tensors={C: self.server_c(global_state)})

    @hookimpl
    def local_grad_correction(self, client_id, server_round, params, global_state, fit_ins):
        c_i = self._load_client(client_id, server_round, fit_ins.tensors[C])
        if not self._correction:  # c − c_i on the parameters' device, once per client
            parts = unflatten(fit_ins.tensors[C] - c_i, params)
            self._correction = [parts[n].to(p.device, p.dtype) for n, p in params.items()]
        grads = [p.grad for p in params.values()]
        if any(g is None for g in grads):
            raise RuntimeError("scaffold: a LoRA parameter has no gradient after backward")
        torch._foreach_add_(grads, self._correction)

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        c = fit_ins.tensors[C]
        c_i = self._load_client(client_id, server_round, c)
        scale = 1.0 / (train_info.steps * train_info.learning_rate)
        delta_c = flatten(global_state).sub_(flatten(local_state)).mul_(scale).sub_(c)  # option II: c_i⁺ − c_i
        self._store().save(client_id, c_i.add_(delta_c))
        self._client, self._c_i, self._correction = None, torch.zeros(0), []
        return {DELTA_C: delta_c}

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        missing = [u.client_id for u in updates if DELTA_C not in u.extra]
        if missing:
            raise ValueError(f"scaffold: clients {missing} sent no control-variate delta (another plugin "
                             "answered client_fit_end first?)")
        k = len(updates)
        x = flatten(global_state)
        mean_delta = sum(flatten(u.state) for u in updates).div_(k).sub_(x)  # (1/|S|) Σ (y_i − x)
        new = unflatten(x.add_(mean_delta, alpha=self.server_lr), global_state)
        c = self.server_c(global_state)
        self.c = c + sum(u.extra[DELTA_C] for u in updates) / num_clients_total  # (|S|/N) · mean Δc_i
        control_bytes = k * c.numel() * c.element_size() + sum(num_bytes(u.extra) for u in updates)
        metrics = {"clients": float(k), "c_norm": float(self.c.norm()), "control_variate_bytes": float(control_bytes)}
        state = {n: t.to(global_state[n].dtype, copy=True) for n, t in new.items()}  # own storage each
        return AggregateResult(state=state, metrics=metrics)

    @hookimpl
    def checkpoint_state(self, directory: Path) -> None:
        target = directory / self.name
        target.mkdir(parents=True, exist_ok=True)
        if self.c is not None:
            save_adapter({C: self.c}, target / "c.safetensors")
        self._store().link_into(target / "clients")

    @hookimpl
    def restore_state(self, directory: Path) -> None:
        source = directory / self.name
        if not source.is_dir():
            raise FileNotFoundError(f"scaffold: the checkpoint {directory} has no scaffold state; "
                                    "was it written by another aggregator?")
        self.c = load_file(str(source / "c.safetensors"))[C] if (source / "c.safetensors").is_file() else None
        self._client, self._c_i, self._correction = None, torch.zeros(0), []
        self._store().replace_from(source / "clients")
