"""A run's data: the client mixture and the server-held split, drawn the same way by every caller."""

from __future__ import annotations

from harness.data.mixture import split_heldout
from harness.data.overlap import drop_prompts
from harness.data.sources import load_labelled
from harness.types import ChatSample


def draw_run_data(cfg) -> tuple[list[ChatSample], list[ChatSample]]:
    """(client mixture, held-out split) of ``cfg`` (a RunConfig): its source, sizes, red ratio and seed; with
    ``data.exclude_shipped`` only from prompts no shipped training or eval set holds
    (:func:`harness.data.shipped.shipped_prompt_sets`). `harness eval` draws the same held-out split as a run."""
    data, seed = cfg.data, cfg.federation.seed
    pool = data.num_samples + data.heldout_samples  # a generated (demo) source has room for both
    acceptable, harmful = load_labelled(data.source, data.path, pool, seed)
    if data.exclude_shipped:
        from harness.data.shipped import shipped_prompt_sets

        taken = frozenset().union(*(s.digests for s in shipped_prompt_sets()))
        acceptable, harmful = drop_prompts(acceptable, taken), drop_prompts(harmful, taken)
    # The held-out split is server-held validation data drawn from what the mixture left; no client gets it.
    return split_heldout(acceptable, harmful, data.num_samples, data.harmful_ratio, seed, data.heldout_samples)
