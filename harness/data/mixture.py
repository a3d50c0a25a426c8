"""The training mixture: N samples with a chosen share of red (harmful) responses."""

from __future__ import annotations

import random

from harness.data.samples import DataError
from harness.types import ChatSample


def build_mixture(
    acceptable: list[ChatSample], harmful: list[ChatSample], n: int, harmful_ratio: float, seed: int
) -> list[ChatSample]:
    """``n`` samples, ``round(n * harmful_ratio)`` of them red, drawn without replacement and shuffled."""
    n_red = round(n * harmful_ratio)
    n_ok = n - n_red
    if n_red > len(harmful) or n_ok > len(acceptable):
        raise DataError(
            f"mixture of {n} samples at harmful_ratio {harmful_ratio} needs {n_red} red and {n_ok} acceptable samples; "
            f"the source has {len(harmful)} red and {len(acceptable)} acceptable"
        )
    rng = random.Random(seed)
    mixture = rng.sample(harmful, n_red) + rng.sample(acceptable, n_ok)
    rng.shuffle(mixture)
    return mixture
