"""`scaffold`: SCAFFOLD on the LoRA weights (Karimireddy et al. 2020, Algorithm 1, option II).

Server: control variate c (float32, CPU). Client i: control variate c_i (float32, on disk, see
:mod:`harness.default_plugins.aggregators.control_variates`). Per round, for each sampled client:

* ``configure_fit`` sends c (counted in the bytes sent down);
* each local step applies the correction c − c_i (moved to the parameters' device once per client), in
  one of two places (option ``correction``):

  - ``gradient``: added to the gradient before the optimizer step (the paper's step −η_l(g + c − c_i));
  - ``post-step``: after the optimizer step, the parameters move by −η_l (c − c_i) (OpenFedLLM's SCAFFOLD);

  ``auto`` (the default) picks ``gradient`` for ``--local-optimizer sgd`` and ``post-step`` for AdamW.
  With SGD both are the same step; with AdamW only ``post-step`` matches the units of c and c_i (below);
* ``client_fit_end``: c_i⁺ = c_i − c + (x − y_i) / (K η_l) (option II, K steps at learning rate η_l),
  stores c_i⁺ and sends Δc_i = c_i⁺ − c_i and the ratio ‖c − c_i‖ / ‖what it was added to‖ (post-step: the
  optimizer's own mean step per unit learning rate, ‖(x − y_i) − K η_l (c − c_i)‖ / (K η_l) = ‖c_i⁺‖;
  gradient: the mean raw gradient; the same under SGD), both counted in the bytes sent up;
* ``aggregate``: x ← x + η_g · mean_i(y_i − x) (unweighted, as in the paper), c ← c + (|S|/N) · mean_i(Δc_i);
  metric ``correction_to_update`` = the clients' mean ratio.

Units: (x − y_i)/(K η_l) is a displacement per unit learning rate, for AdamW the mean normalised step
m̂/(√v̂ + ε) (order 1 per coordinate), so c and c_i are in those units. Post-step adds them next to Adam's
step (ratio O(1)); gradient mode adds them to gradients of size ~1e-3 (ratio in the hundreds).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.adapters import num_bytes, save_adapter
from harness.hookspecs import hookimpl
from harness.types import AdapterState, AggregateResult, FitIns
from harness.default_plugins.aggregators.control_variates import ControlVariateStore, flatten, unflatten

log = logging.getLogger(__name__)

C, DELTA_C, RATIO = "c", "delta_c", "correction_to_update"  # sent down (FitIns), up (ClientUpdate.extra)
CORRECTIONS = ("auto", "gradient", "post-step")


class Scaffold:
    name = "scaffold"

    def __init__(self, server_lr: float = 1.0, state_dir: str | None = None, correction: str = "auto"):
        """``state_dir``: where the c_i files live (default: ``<run_dir>/scaffold``). ``correction``: where
        c − c_i is applied (``gradient`` | ``post-step``; ``auto``: from the run's local optimizer)."""
        if server_lr <= 0:
            raise ValueError(f"server_lr must be > 0, got {server_lr}")
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
        self.server_lr = server_lr
        self.correction = correction
        self.store = ControlVariateStore(Path(state_dir)) if state_dir else None
        self.c: torch.Tensor | None = None  # flat float32, in the adapter's name order
        self._client: tuple[int, int] | None = None  # (client, round) of the cached c_i and correction
        self._c_i = torch.zeros(0)
        self._correction: list[torch.Tensor] = []
        self._grad_sum: list[torch.Tensor] = []  # gradient mode: the client's raw gradients, summed over its steps

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
            self._client, self._correction, self._grad_sum = (client_id, server_round), [], []
        return self._c_i

    def _applies(self, mode: str) -> bool:
        if self.correction == "auto":
            raise RuntimeError("scaffold: correction='auto' follows federation.local_optimizer and is resolved in "
                               "on_run_start; pass correction='gradient' or 'post-step' to drive the hooks directly")
        return self.correction == mode

    def _client_correction(self, client_id, server_round, params, fit_ins) -> list[torch.Tensor]:
        """c − c_i as one tensor per parameter, on the parameters' device (built once per client)."""
        c_i = self._load_client(client_id, server_round, fit_ins.tensors[C])
        if not self._correction:
            parts = unflatten(fit_ins.tensors[C] - c_i, params)
            self._correction = [parts[n].to(p.device, p.dtype) for n, p in params.items()]
        return self._correction

    @hookimpl
    def on_run_start(self, run) -> None:
        if self.store is None:
            self.store = ControlVariateStore(run.run_dir / "scaffold")
        optimizer = run.config.federation.local_optimizer
        if self.correction == "auto":
            self.correction = "gradient" if optimizer == "sgd" else "post-step"
        elif self.correction == "gradient" and optimizer != "sgd":
            log.warning("scaffold with correction=gradient and local optimizer %r: c − c_i, estimated in units of "
                        "the optimizer's normalised step, is added to raw gradients and soon dominates them; use "
                        "correction=post-step (the default for %s); see docs/aggregation.md", optimizer, optimizer)

    @hookimpl
    def configure_fit(self, server_round, client_id, global_state):
        return FitIns(tensors={C: self.server_c(global_state)})

    @hookimpl
    def local_grad_correction(self, client_id, server_round, params, global_state, fit_ins):
        if not self._applies("gradient"):
            return
        correction = self._client_correction(client_id, server_round, params, fit_ins)
        grads = [p.grad for p in params.values()]
        if any(g is None for g in grads):
            raise RuntimeError("scaffold: a LoRA parameter has no gradient after backward")
        if self._grad_sum:
            torch._foreach_add_(self._grad_sum, grads)
        else:
            self._grad_sum = [g.detach().to(torch.float32, copy=True) for g in grads]
        torch._foreach_add_(grads, correction)

    @hookimpl
    def local_post_step(self, client_id, server_round, params, global_state, fit_ins, learning_rate):
        if not self._applies("post-step"):
            return
        correction = self._client_correction(client_id, server_round, params, fit_ins)
        with torch.no_grad():
            torch._foreach_add_(list(params.values()), correction, alpha=-learning_rate)

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        c = fit_ins.tensors[C]
        c_i = self._load_client(client_id, server_round, c)
        correction_norm = float(torch.linalg.vector_norm(c - c_i))
        scale = 1.0 / (train_info.steps * train_info.learning_rate)
        delta_c = flatten(global_state).sub_(flatten(local_state)).mul_(scale).sub_(c)  # option II: c_i⁺ − c_i
        c_i.add_(delta_c)  # c_i⁺: the optimizer's own mean step per unit learning rate
        if self._grad_sum:  # gradient mode: c − c_i was added to the raw gradients
            own = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self._grad_sum)))) / train_info.steps
        else:  # post-step mode: c − c_i was added to the optimizer's own steps
            own = float(torch.linalg.vector_norm(c_i))
        ratio = correction_norm / max(own, torch.finfo(torch.float32).tiny)
        self._store().save(client_id, c_i)
        self._client, self._c_i, self._correction, self._grad_sum = None, torch.zeros(0), [], []
        return {DELTA_C: delta_c, RATIO: torch.tensor([ratio])}

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        missing = [u.client_id for u in updates if not {DELTA_C, RATIO} <= u.extra.keys()]
        if missing:
            raise ValueError(f"scaffold: clients {missing} sent no control-variate delta (another plugin "
                             "answered client_fit_end first?)")
        k = len(updates)
        x = flatten(global_state)
        mean_delta = sum(flatten(u.state) for u in updates).div_(k).sub_(x)  # (1/|S|) Σ (y_i − x)
        new = unflatten(x.add_(mean_delta, alpha=self.server_lr), global_state)
        c = self.server_c(global_state)
        self.c = c + sum(u.extra[DELTA_C] for u in updates) / num_clients_total  # (|S|/N) · mean Δc_i
        control_bytes = k * c.numel() * c.element_size() + sum(num_bytes({DELTA_C: u.extra[DELTA_C]}) for u in updates)
        metrics = {"clients": float(k), "c_norm": float(self.c.norm()), "control_variate_bytes": float(control_bytes),
                   RATIO: sum(float(u.extra[RATIO]) for u in updates) / k}
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
        self._client, self._c_i, self._correction, self._grad_sum = None, torch.zeros(0), [], []
        self._store().replace_from(source / "clients")
