"""Client update hygiene between local training and aggregation: drop non-finite updates, clip update norms."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from harness.types import AdapterState, ClientUpdate


@dataclass
class ScreenedUpdates:
    """The updates fit to aggregate, and the ids of the clients whose update was rejected or clipped."""

    accepted: list[ClientUpdate] = field(default_factory=list)
    rejected_nonfinite: list[int] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)


def is_finite(update: ClientUpdate) -> bool:
    """Whether every adapter tensor and every extra tensor (e.g. SCAFFOLD's control variate) is finite."""
    return all(bool(torch.isfinite(t).all()) for t in (*update.state.values(), *update.extra.values()))


def update_norm(update: ClientUpdate, global_state: AdapterState) -> float:
    """L2 norm of the update delta (local - global) over all adapter tensors together."""
    squares = sum(float((update.state[n].double() - ref.double()).pow(2).sum()) for n, ref in global_state.items())
    return math.sqrt(squares)


def clip_update(update: ClientUpdate, global_state: AdapterState, max_norm: float,
                norm: float | None = None) -> ClientUpdate:
    """``update`` with its delta scaled down to L2 norm ``max_norm`` (unchanged when already within it); ``norm``:
    the delta's norm where the caller has it already."""
    norm = update_norm(update, global_state) if norm is None else norm
    if norm <= max_norm:
        return update
    scale = max_norm / norm
    state = {n: (ref.double() + (update.state[n].double() - ref.double()) * scale).to(ref.dtype)
             for n, ref in global_state.items()}
    return dataclasses.replace(update, state=state)


def screen_updates(updates: list[ClientUpdate], global_state: AdapterState, clip_norm: float | None) -> ScreenedUpdates:
    """Reject updates with NaN/Inf values, then clip the rest to ``clip_norm`` (None: no clipping)."""
    screened = ScreenedUpdates()
    for update in updates:
        if not is_finite(update):
            screened.rejected_nonfinite.append(update.client_id)
            continue
        if clip_norm is not None:
            clipped = clip_update(update, global_state, clip_norm)
            if clipped is not update:
                screened.clipped.append(update.client_id)
            update = clipped
        screened.accepted.append(update)
    return screened
