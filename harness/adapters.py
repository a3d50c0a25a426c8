"""LoRA adapter state: read, swap in place, size, validate, save and load (safetensors only)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from harness.types import AdapterState


class AdapterStateError(ValueError):
    """An adapter state does not match the model's adapter (names, shapes, dtypes) or is not finite."""


def trainable_params(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable (LoRA) parameters by name, in module order."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


class ReadOnlyStateError(RuntimeError):
    """A plugin wrote into a state it receives read-only (e.g. ``global_state``)."""


def read_only_copy(state: AdapterState) -> AdapterState:
    """What a hook receives for a read-only state: a copy, so a write into it cannot reach the engine's state
    (torch has no tensors that refuse in-place writes); :func:`changed_tensors` then detects the write."""
    return {name: t.clone() for name, t in state.items()}


def changed_tensors(copy: AdapterState, original: AdapterState) -> list[str]:
    """Names of the tensors of ``copy`` that no longer equal ``original`` (a finite state: NaN counts as changed)."""
    return [name for name, t in original.items() if name not in copy or not torch.equal(copy[name], t)]


def snapshot(params: dict[str, torch.nn.Parameter]) -> AdapterState:
    """A detached CPU copy of the adapter (small: only LoRA tensors are copied, never the base)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in params.items()}


@torch.no_grad()
def load_into(params: dict[str, torch.nn.Parameter], state: AdapterState) -> None:
    """Copy ``state`` into the resident parameters in place (no new tensors, no model copy)."""
    for name, p in params.items():
        p.copy_(state[name])


def num_bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def check_compatible(state: AdapterState, reference: AdapterState, what: str) -> None:
    """Raise :class:`AdapterStateError` unless ``state`` matches ``reference`` and is finite."""
    if not isinstance(state, dict):
        raise AdapterStateError(f"{what} returned {type(state).__name__}, expected a dict of tensors")
    missing = [n for n in reference if n not in state]
    extra = [n for n in state if n not in reference]
    if missing or extra:
        raise AdapterStateError(f"{what}: missing tensors {missing[:3]} / unexpected tensors {extra[:3]}")
    for name, ref in reference.items():
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise AdapterStateError(f"{what}: {name} is {type(t).__name__}, not a tensor")
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise AdapterStateError(
                f"{what}: {name} has shape {tuple(t.shape)} dtype {t.dtype}, expected {tuple(ref.shape)} {ref.dtype}"
            )
        if not torch.isfinite(t).all():
            raise AdapterStateError(f"{what}: {name} has non-finite values (NaN/Inf)")


def save_adapter(state: AdapterState, path: Path) -> Path:
    """Write ``state`` atomically as safetensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({n: t.contiguous() for n, t in state.items()}, str(tmp))
    os.replace(tmp, path)
    return path


def load_adapter(path: Path) -> AdapterState:
    return load_file(str(path))
