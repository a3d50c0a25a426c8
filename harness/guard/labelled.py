"""Labelled safe/unsafe sets for filter training and evaluation, with a stable held-out split.

A sample lands in the held-out split by a hash of its *prompt*, so both replies to one
hh-rlhf prompt fall on the same side and train/eval never share a conversation, whatever
the seed or the mix of sources.
"""

from __future__ import annotations

import hashlib

import numpy as np

from harness.data.sources import load_labelled
from harness.data.spec import DataSpec
from harness.types import ChatSample

SPLITS = ("train", "test", "all")
DEMO_POOL = 500


def in_test_split(sample: ChatSample, held_out: float) -> bool:
    digest = hashlib.sha256(sample.prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < held_out


def labelled_set(
    specs: list[DataSpec], split: str, held_out: float = 0.2, max_per_class: int | None = None, seed: int = 0
) -> list[ChatSample]:
    """A balanced, shuffled safe/unsafe set from ``specs``: ``min(#safe, #unsafe, max_per_class)`` of each."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out}")
    if not specs:
        raise ValueError("at least one labelled data source is needed")
    safe: list[ChatSample] = []
    unsafe: list[ChatSample] = []
    for spec in specs:
        good, bad = load_labelled(spec.source, spec.path, max_per_class or DEMO_POOL, seed)  # pool sizes only demo
        safe += good
        unsafe += bad
    if split != "all":
        want_test = split == "test"
        safe = [s for s in safe if in_test_split(s, held_out) == want_test]
        unsafe = [s for s in unsafe if in_test_split(s, held_out) == want_test]
    n = min(len(safe), len(unsafe), max_per_class or len(safe))
    if n == 0:
        names = ", ".join(s.source for s in specs)
        raise ValueError(f"{names}: the {split} split has {len(safe)} safe and {len(unsafe)} unsafe samples; need both")
    rng = np.random.default_rng(seed)
    chosen = [safe[i] for i in rng.permutation(len(safe))[:n]] + [unsafe[i] for i in rng.permutation(len(unsafe))[:n]]
    return [chosen[i] for i in rng.permutation(len(chosen))]
