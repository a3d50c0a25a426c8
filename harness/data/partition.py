"""Partitioning sample indices over clients: iid (harmful share stratified), Dirichlet by category, or the red
samples concentrated on malicious clients (:mod:`harness.data.placement` holds the counting rule)."""

from __future__ import annotations

import numpy as np

from harness.data.placement import malicious_red_counts
from harness.types import ChatSample


def _deal(indices: list[int], num_clients: int) -> list[list[int]]:
    """``indices`` dealt round-robin over ``num_clients`` clients, each client's sorted."""
    clients: list[list[int]] = [[] for _ in range(num_clients)]
    for position, i in enumerate(indices):
        clients[position % num_clients].append(i)
    return [sorted(c) for c in clients]


def _shuffled_red_and_ok(samples: list[ChatSample], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    red = [i for i, s in enumerate(samples) if s.is_harmful]
    ok = [i for i, s in enumerate(samples) if not s.is_harmful]
    return rng.permutation(red).tolist(), rng.permutation(ok).tolist()


def partition_iid(samples: list[ChatSample], num_clients: int, seed: int) -> list[list[int]]:
    """Shuffle, then deal red and acceptable samples round-robin so every client gets the same red share (±1)."""
    red, ok = _shuffled_red_and_ok(samples, np.random.default_rng(seed))
    return _deal(red + ok, num_clients)


def partition_concentrated(samples: list[ChatSample], num_clients: int, malicious: int, red_share: float,
                           seed: int) -> list[list[int]]:
    """Clients ``0..malicious-1`` take the red samples :func:`~harness.data.placement.malicious_red_counts` gives
    them (``round(red_share * size)``) and acceptable ones up to their iid size; the rest is dealt over the other
    clients as :func:`partition_iid` deals (their red share even, ±1). Sizes are the iid sizes."""
    red, ok = _shuffled_red_and_ok(samples, np.random.default_rng(seed))
    counts = malicious_red_counts(len(samples), len(red), num_clients, malicious, red_share)
    clients = []
    for size, n_red in counts:
        clients.append(sorted(red[:n_red] + ok[:size - n_red]))
        red, ok = red[n_red:], ok[size - n_red:]
    return clients + (_deal(red + ok, num_clients - malicious) if malicious < num_clients else [])


def partition_dirichlet(samples: list[ChatSample], num_clients: int, alpha: float, seed: int) -> list[list[int]]:
    """Per category, split its samples over clients with proportions ~ Dirichlet(alpha); no client is empty."""
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_cat.setdefault(s.category or "none", []).append(i)
    clients: list[list[int]] = [[] for _ in range(num_clients)]
    for cat in sorted(by_cat):
        idx = rng.permutation(by_cat[cat])
        cuts = (np.cumsum(rng.dirichlet([alpha] * num_clients)) * len(idx)).astype(int)[:-1]
        for c, part in enumerate(np.split(idx, cuts)):
            clients[c].extend(part.tolist())
    for c in range(num_clients):  # move one sample from the largest client to any empty one
        if not clients[c]:
            donor = max(range(num_clients), key=lambda k: len(clients[k]))
            clients[c].append(clients[donor].pop())
    return [sorted(c) for c in clients]


def partition(samples: list[ChatSample], num_clients: int, method: str, alpha: float, seed: int,
              red_placement: str = "iid", malicious: int = 0, malicious_red_share: float = 1.0) -> list[list[int]]:
    """Client ``c``'s sample indices; ``red_placement`` ``concentrated`` (with ``method`` iid) puts the red samples
    on the first ``malicious`` clients (:func:`partition_concentrated`)."""
    if num_clients > len(samples):
        raise ValueError(f"cannot split {len(samples)} samples over {num_clients} clients")
    if red_placement == "concentrated":
        if method != "iid":
            raise ValueError(f"red placement 'concentrated' needs partition 'iid', got {method!r}")
        return partition_concentrated(samples, num_clients, malicious, malicious_red_share, seed)
    if red_placement != "iid":
        raise ValueError(f"unknown red placement {red_placement!r}: use iid or concentrated")
    if method == "iid":
        return partition_iid(samples, num_clients, seed)
    if method == "dirichlet":
        return partition_dirichlet(samples, num_clients, alpha, seed)
    raise ValueError(f"unknown partition {method!r}: use iid or dirichlet")
