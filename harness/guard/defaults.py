"""Which guard a filter or judge uses when none is named: one that flags unsafe samples for the model at hand."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from harness.models import SMOLLM2, SMOLLM2_SAFE, TINY_RANDOM

SHIPPED_GUARDS = Path(find_spec("harness.default_plugins.filters").submodule_search_locations[0]) / "guards"
"""plugins/filters/guards of the checkout, package data of an install."""
SMOLLM2_GUARD = SHIPPED_GUARDS / "smollm2-135m-lg3"
"""The project's Llama-Guard-3-format guard fine-tuned on SmolLM2-135M-Instruct (package data)."""
EMBED_LR_HEAD = SHIPPED_GUARDS / "embed-lr-minilm"
"""The project's all-MiniLM-L6-v2 + logistic-regression head (package data), the ``embed-lr`` default."""
HUB_GUARD = "meta-llama/Llama-Guard-3-1B"
"""The real Llama Guard 3 for hub models (``meta-llama/Llama-Guard-3-8B`` is the paper's)."""


def default_guard(model_name: str) -> str:
    """The guard for a run on ``model_name``: the shipped SmolLM2 guard for the embedded models (plain and
    safe) and the tiny test model (no hub needed), the real Llama Guard 3 otherwise."""
    if model_name in (SMOLLM2, SMOLLM2_SAFE, TINY_RANDOM):
        return str(SMOLLM2_GUARD)
    return HUB_GUARD
