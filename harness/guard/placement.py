"""Where a guard's weights live: the device it scores on, its precision, and where it waits between uses.

With an 8B policy and an 8B guard on one GPU the guard must not sit beside the policy while it trains
(docs/performance.md, "Memory plan for one GPU"). :class:`HeldGuard` puts the guard on its device only while it
scores and, between uses, keeps it where ``between_uses`` says:

* ``stay``: on its device (the only choice before #38; right on a CPU, where nothing is gained by moving it);
* ``cpu``: moved to host memory, moved back for the next scoring (a PCIe copy, ~1-2 s for 16 GB);
* ``unload``: freed, loaded from disk again when next needed (what a quantised guard does, since bitsandbytes
  weights cannot be moved);
* ``auto``: ``stay`` on a CPU, ``cpu`` on a GPU, ``unload`` on a GPU when quantised.

After ``cpu`` and ``unload`` the CUDA allocator's cache is emptied, so the memory is the policy's again.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from harness.config import DTYPES, QUANTIZATIONS
from harness.models import resolve_device

log = logging.getLogger(__name__)

BETWEEN_USES = ("auto", "stay", "cpu", "unload")


@dataclass(frozen=True)
class GuardPlacement:
    """The guard's device (``auto``: the run's GPU if any), dtype, quantisation and place between uses."""

    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "none"
    between_uses: str = "auto"

    def __post_init__(self):
        if self.between_uses not in BETWEEN_USES:
            raise ValueError(f"between_uses must be one of {', '.join(BETWEEN_USES)}, got {self.between_uses!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {self.quantization!r}")
        if self.quantization != "none" and self.between_uses == "cpu":
            raise ValueError("a quantised guard cannot be moved to the CPU between uses: use between_uses=unload")

    def idle(self, device: torch.device) -> str:
        """Where the guard waits between uses when it scores on ``device`` (``auto`` resolved)."""
        if self.between_uses != "auto":
            return self.between_uses
        if device.type == "cpu":
            return "stay"
        return "cpu" if self.quantization == "none" else "unload"


class HeldGuard:
    """A guard model (``model``, else made by ``load`` on first use), released after each use as its placement
    says and made again by ``load`` after an unload."""

    def __init__(self, load: Callable[[], torch.nn.Module], placement: GuardPlacement,
                 model: torch.nn.Module | None = None):
        self.load, self.placement, self.model = load, placement, model
        self.device = resolve_device(placement.device)
        self.idle = placement.idle(self.device)
        self.loads = 0 if model is None else 1  # how many times the weights were loaded (``unload`` reloads)

    @contextmanager
    def use(self) -> Iterator[torch.nn.Module]:
        """The guard on its device for the block; released after it."""
        if self.model is None:
            self.model = self.load()
            self.loads += 1
        elif self.idle == "cpu":
            self.model.to(self.device)
        try:
            yield self.model
        finally:
            self.release()

    def release(self) -> None:
        if self.model is None or self.idle == "stay":
            return
        if self.idle == "cpu":
            self.model.to("cpu")
        else:
            self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.debug("guard released (%s)", self.idle)
