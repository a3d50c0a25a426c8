"""Coordinate-wise order statistics of client adapters, shared by the robust aggregators."""

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
