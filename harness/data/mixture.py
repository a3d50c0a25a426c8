"""The training mixture: N samples with a chosen share of red (harmful) responses."""

from __future__ import annotations

import random

from harness.data.samples import DataError
from harness.types import ChatSample


def build_mixture(
    acceptable: list[ChatSample], harmful: list[ChatSample], n: int, harmful_ratio: float, seed: int
) -> list[ChatSample]:
    """``n`` samples, ``round(n * harmful_ratio)`` of them red, drawn without replacement and shuffled."""
    return _draw(acceptable, harmful, n, harmful_ratio, seed)[0]


def _draw(
    acceptable: list[ChatSample], harmful: list[ChatSample], n: int, harmful_ratio: float, seed: int, what: str = "mixture"
) -> tuple[list[ChatSample], list[ChatSample], list[ChatSample]]:
    """The mixture and the acceptable and red samples it did not draw (by position, so duplicates stay apart)."""
    n_red = round(n * harmful_ratio)
    n_ok = n - n_red
    if n_red > len(harmful) or n_ok > len(acceptable):
        raise DataError(
            f"{what} of {n} samples at harmful_ratio {harmful_ratio} needs {n_red} red and {n_ok} acceptable samples; "
            f"the source has {len(harmful)} red and {len(acceptable)} acceptable"
        )
    rng = random.Random(seed)
    red = rng.sample(range(len(harmful)), n_red)  # the same draws as sampling the lists themselves
    ok = rng.sample(range(len(acceptable)), n_ok)
    mixture = [harmful[i] for i in red] + [acceptable[i] for i in ok]
    rng.shuffle(mixture)
    red_left, ok_left = set(range(len(harmful))) - set(red), set(range(len(acceptable))) - set(ok)
    return mixture, [acceptable[i] for i in sorted(ok_left)], [harmful[i] for i in sorted(red_left)]


HELD_OUT_SEED = 10_007


def split_heldout(
    acceptable: list[ChatSample], harmful: list[ChatSample], n: int, harmful_ratio: float, seed: int, n_heldout: int
) -> tuple[list[ChatSample], list[ChatSample]]:
    """(client mixture, held-out samples): the mixture is :func:`build_mixture`'s; the ``n_heldout`` held-out
    samples are drawn the same way (same ratio) from the source rows the mixture did not draw."""
    mixture, ok_left, red_left = _draw(acceptable, harmful, n, harmful_ratio, seed)
    if n_heldout == 0:
        return mixture, []
    heldout = _draw(ok_left, red_left, n_heldout, harmful_ratio, seed + HELD_OUT_SEED,
                    f"held-out split (data.heldout_samples) after the {n}-sample client mixture")[0]
    return mixture, heldout
