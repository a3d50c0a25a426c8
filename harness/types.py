"""Typed values that cross the hook boundary (what plugins receive and return)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

AdapterState = dict[str, torch.Tensor]
"""Trainable LoRA tensors by parameter name, on CPU, in a fixed name order."""


@dataclass(frozen=True)
class ChatSample:
    """One single-turn chat sample of a client's private data."""

    prompt: str
    response: str
    is_harmful: bool | None = None
    category: str | None = None
    source: str = ""


@dataclass
class FilterVerdict:
    """A filter's answer for a client's samples: one keep flag (and optionally a score) per sample."""

    keep: list[bool]
    scores: list[float] | None = None


@dataclass
class FitIns:
    """What the server sends a sampled client besides the global adapter (e.g. SCAFFOLD's c)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalTrainInfo:
    """What the local training loop did for one client in one round."""

    steps: int
    learning_rate: float
    mean_loss: float
    num_tokens: int
    step_seconds: float  # time inside forward, backward and optimizer steps
    padding_fraction: float


@dataclass
class ClientUpdate:
    """One client's result of a round, the only thing that crosses to the server (like Flower's FitRes)."""

    client_id: int
    num_examples: int
    state: AdapterState
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def delta(self, global_state: AdapterState) -> AdapterState:
        """The client's change to the global adapter, y_i - x."""
        return {name: self.state[name] - global_state[name] for name in global_state}


@dataclass
class AggregateResult:
    """An aggregator's answer: the new global adapter and metrics to log."""

    state: AdapterState
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class AlignResult:
    """An aligner's answer: the aligned global adapter (None keeps the current one) and metrics."""

    state: AdapterState | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalResult:
    """An evaluation's named metrics and text artifacts (file name -> content) to store with the run."""

    metrics: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class RunInfo:
    """Identity of a run, given to lifecycle hooks."""

    run_name: str
    run_dir: Path
    config: Any  # harness.config.RunConfig; typed loosely to keep this module import-light
    params: dict[str, Any]
    resume_round: int | None = None  # the round a resumed run continues at; None for a fresh run
    engine: str = "local"  # "local", "flower" (Simulation Engine) or "flower-deployment"


@dataclass
class RunSummary:
    """What a finished (or failed) run produced."""

    status: str  # "FINISHED" or "FAILED"
    rounds_completed: int
    final_metrics: dict[str, float]
    adapter_path: Path | None
    wall_seconds: float
    error: str | None = None
