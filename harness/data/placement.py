"""Who holds the red data: the counting rule of ``data.red_placement: concentrated`` (docs/data.md), in plain
Python so that config validation can apply it before any data is drawn.

Client sizes are the iid sizes (``num_samples // num_clients``, the first ``num_samples % num_clients`` clients one
more), so the total is ``num_samples`` and the pool's red count stays ``round(num_samples * harmful_ratio)``.
Malicious client ``c`` (ids ``0..k-1``) holds ``round(malicious_red_share * size_c)`` red samples; the honest
clients share the remaining red samples evenly (±1), so their red share is
``(red - malicious red) / (honest samples)``.
"""

from __future__ import annotations

PLACEMENTS = ("iid", "concentrated")


class PlacementError(ValueError):
    """The client mixture cannot be placed as asked (too few red or acceptable samples)."""


def client_sizes(num_samples: int, num_clients: int) -> list[int]:
    """Every client's sample count under iid dealing."""
    return [num_samples // num_clients + (c < num_samples % num_clients) for c in range(num_clients)]


def malicious_red_counts(num_samples: int, num_red: int, num_clients: int, malicious: int,
                         red_share: float) -> list[tuple[int, int]]:
    """(size, red samples) of each malicious client; :class:`PlacementError` when the mixture's ``num_red`` red
    samples cannot fill them, or the honest clients cannot take the red samples left over."""
    placed = [(size, round(red_share * size)) for size in client_sizes(num_samples, num_clients)[:malicious]]
    held = sum(n for _, n in placed)
    honest = num_samples - sum(size for size, _ in placed)
    if held > num_red:
        raise PlacementError(f"data.malicious_clients={malicious} at data.malicious_red_share={red_share:g} hold "
                             f"{held} red samples; the client mixture has {num_red} (data.num_samples × "
                             "data.harmful_ratio): raise data.harmful_ratio or lower the malicious share")
    if num_red - held > honest:
        raise PlacementError(f"data.malicious_clients={malicious} at data.malicious_red_share={red_share:g} hold "
                             f"{held} of the mixture's {num_red} red samples, and the honest clients' {honest} "
                             f"samples cannot take the other {num_red - held}: raise the malicious share or lower "
                             "data.harmful_ratio")
    return placed
