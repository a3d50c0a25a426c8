"""Partitioning sample indices over clients: iid (harmful share stratified) or Dirichlet by category."""

from __future__ import annotations

import numpy as np

from harness.types import ChatSample


def partition_iid(samples: list[ChatSample], num_clients: int, seed: int) -> list[list[int]]:
    """Shuffle, then deal red and acceptable samples round-robin so every client gets the same red share (±1)."""
    rng = np.random.default_rng(seed)
    red = [i for i, s in enumerate(samples) if s.is_harmful]
    ok = [i for i, s in enumerate(samples) if not s.is_harmful]
    clients: list[list[int]] = [[] for _ in range(num_clients)]
    position = 0
    for group in (rng.permutation(red).tolist(), rng.permutation(ok).tolist()):
        for i in group:
            clients[position % num_clients].append(i)
            position += 1
    return [sorted(c) for c in clients]


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


def partition(samples: list[ChatSample], num_clients: int, method: str, alpha: float, seed: int) -> list[list[int]]:
    if num_clients > len(samples):
        raise ValueError(f"cannot split {len(samples)} samples over {num_clients} clients")
    if method == "iid":
        return partition_iid(samples, num_clients, seed)
    if method == "dirichlet":
        return partition_dirichlet(samples, num_clients, alpha, seed)
    raise ValueError(f"unknown partition {method!r}: use iid or dirichlet")
