"""Typed values that cross the hook boundary (what plugins receive and return)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads only where tensors are made: `harness --help` and validation stay fast
    import torch

AdapterState = dict[str, "torch.Tensor"]
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
    """An aggregator's answer: the new global adapter and metrics to log. The engine logs each metric as
    ``agg/<name>``; a name that already starts with ``agg/`` is logged as it is (never ``agg/agg/...``)."""

    state: AdapterState
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class AlignResult:
    """An aligner's answer: the aligned global adapter (None keeps the current one) and metrics, logged as
    ``align/<name>`` (a name that already starts with ``align/`` as it is)."""

    state: AdapterState | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalResult:
    """An evaluation's named metrics and text artifacts (file name -> content) to store with the run."""

    metrics: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)


BETTER = ("higher", "lower", "")


@dataclass(frozen=True)
class Headline:
    """A metric an eval plugin asks the run summary and the default board to show. Declare them in the plugin
    class's ``headline`` tuple (docs/plugins.md); a metric the run did not log is left out."""

    metric: str  # the full name the plugin logs: "advbench/harmless_rate_openfedllm"
    label: str  # the summary line and the board column: "advbench harmless, openfedllm rule"
    better: str = "higher"  # "higher", "lower" or "" (neither): the board's arrow, "lower is better" in the summary
    items: str | None = None  # for a share in [0, 1]: the metric counting its items (n); the summary then shows n
    # and the share's 95 % interval
    format: str = ".3f"
    board: bool = True  # False: the run summary only (the default board has enough columns)

    def __post_init__(self):
        if not self.metric or not self.label:
            raise ValueError(f"Headline needs a metric and a label, got {self.metric!r}, {self.label!r}")
        if self.better not in BETTER:
            raise ValueError(f"Headline {self.metric}: better must be 'higher', 'lower' or '', got {self.better!r}")
        format(0.5, self.format)  # ValueError for a bad number format


@dataclass
class RunInfo:
    """Identity of a run, given to lifecycle hooks."""

    run_name: str
    run_dir: Path
    config: Any  # harness.config.RunConfig; typed loosely to keep this module import-light
    params: dict[str, Any]
    resume_round: int | None = None  # the round a resumed run continues at; None for a fresh run
    engine: str = "local"  # "local", "flower" (Simulation Engine) or "flower-deployment"
    heldout: list[ChatSample] = field(default_factory=list)
    """Server-held validation samples (``data.heldout_samples``): drawn from the run's own sources at its
    harmful ratio, never given to any client. Server data, not client data: evals may score them."""


@dataclass
class RunSummary:
    """What a finished (or failed) run produced."""

    status: str  # "FINISHED" or "FAILED"
    rounds_completed: int
    final_metrics: dict[str, float]
    adapter_path: Path | None
    wall_seconds: float
    error: str | None = None
    pretrained_metrics: dict[str, float] = field(default_factory=dict)  # the evals before round 1 (step 0)


@dataclass(frozen=True)
class PromptSet:
    """Prompts a plugin trains on (``role`` "guard", "cai", ...) or scores (``role`` "eval"), for the
    run-start overlap check (:mod:`harness.data.overlap`). Build it with :meth:`from_texts` or
    :meth:`from_digests`; prompts are compared by :func:`harness.data.normalize.prompt_digest`."""

    role: str  # "eval" for benchmark items; any other lower-case word names training data ("guard", "cai")
    name: str  # what the set is, for messages: "advbench", "guard smollm2-135m-lg3"
    digests: frozenset[str]  # sha256 hex of each normalised prompt
    origin: str = ""  # the file or directory the prompts come from, for messages
    examples: dict[str, str] = field(default_factory=dict, compare=False)  # digest -> prompt text, where known

    @classmethod
    def from_texts(cls, role: str, name: str, texts, origin: str = "") -> PromptSet:
        from harness.data.normalize import prompt_digest

        examples: dict[str, str] = {}
        for text in texts:
            examples.setdefault(prompt_digest(text), text)
        return cls(role, name, frozenset(examples), origin, examples)

    @classmethod
    def from_digests(cls, role: str, name: str, digests, origin: str = "") -> PromptSet:
        return cls(role, name, frozenset(d.strip().lower() for d in digests), origin)
