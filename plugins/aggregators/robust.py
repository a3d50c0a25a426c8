"""Shared by the robust aggregators: coordinate-wise order statistics and pairwise distances of client adapters."""

from __future__ import annotations

import torch

from harness.types import AdapterState, ClientUpdate


def sorted_coordinates(updates: list[ClientUpdate], name: str) -> torch.Tensor:
    """The clients' values of tensor ``name``, sorted per coordinate along a new first axis."""
    return torch.stack([u.state[name].float() for u in updates]).sort(dim=0).values


def coordinate_median(updates: list[ClientUpdate], reference: AdapterState) -> AdapterState:
    """Per coordinate: the middle value, or the mean of the two middle ones (NumPy's median)."""
    k = len(updates)
    out = {}
    for n, ref in reference.items():
        s = sorted_coordinates(updates, n)
        mid = s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2
        out[n] = mid.to(ref.dtype)
    return out


def coordinate_trimmed_mean(updates: list[ClientUpdate], reference: AdapterState, trim: int) -> AdapterState:
    """Per coordinate: the mean after dropping the ``trim`` smallest and ``trim`` largest values."""
    k = len(updates)
    return {n: sorted_coordinates(updates, n)[trim : k - trim].mean(dim=0).to(ref.dtype) for n, ref in reference.items()}


def pairwise_squared_distances(updates: list[ClientUpdate], reference: AdapterState) -> torch.Tensor:
    """k×k float64 matrix of ‖Δ_i − Δ_j‖², over all of ``reference``'s tensors together (Δ_i = y_i − x).

    ‖Δ_i − Δ_j‖ = ‖y_i − y_j‖, so it is summed over the adapters one tensor at a time (no flat copy of them).
    """
    k = len(updates)
    out = torch.zeros(k, k, dtype=torch.float64)
    for n in reference:
        rows = torch.stack([u.state[n].double().reshape(-1) for u in updates])
        out += torch.cdist(rows, rows, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    return out
