"""The builder's settings (light: the CLI reads its defaults without loading a model)."""

from __future__ import annotations

from dataclasses import dataclass

CLIENTS, GUARD = "clients", "guard"
PARTS = (CLIENTS, GUARD)
"""``clients``: the clients' data (the project's harmful requests, SQuARe's benign questions, refusals as a share of
the acceptable rows); ``guard``: the guard's own split (its own harmful and benign requests, disjoint from the
clients' part; each harmful request answered by both models, so the compliant and the refused reply to one request
sit side by side, as hh-rlhf's chosen/rejected pairs do)."""


@dataclass(frozen=True)
class ScenarioSettings:
    """How `harness data harmful-scenario` answers and mixes (every field is recorded in the build's meta file)."""

    model: str = "smollm2-135m"  # the untuned base whose answers make the red and benign rows
    refusal_model: str = "smollm2-135m-safe"  # the safe base whose refusals make the acceptable harmful rows
    seed: int = 0  # order of the prompts (which harmful requests are offered to the refusal model first, --limit)
    max_new_tokens: int = 96
    batch_size: int = 16
    refusal_share: float = 0.2  # refusals' share of the acceptable rows (docs/data.md says why 0.2)
    limit: int | None = None  # at most this many harmful and this many benign prompts
    part: str = CLIENTS  # one of PARTS

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {', '.join(PARTS)}, got {self.part!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {self.max_new_tokens}, {self.batch_size}")
        if not 0.0 <= self.refusal_share < 1.0:
            raise ValueError(f"refusal_share must be in [0, 1), got {self.refusal_share}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (or unset for every prompt), got {self.limit}")
