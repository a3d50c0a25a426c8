"""This machine's matrix-product rate (fp32 unless asked otherwise), measured with ``torch.matmul`` on square matrices."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(n: int, device: torch.device | str = "cpu", min_seconds: float = 0.25, warmup: int = 2,
                 dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of an ``n x n`` by ``n x n`` product in ``dtype`` (2 n^3 FLOPs), repeated for ``min_seconds``."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(n)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    _sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b, out=out)
        reps += 1
        if reps % 4 == 0 or device.type == "cpu":
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return 2.0 * n**3 * reps / elapsed


def matmul_peak(sizes: Sequence[int] = (576, 1536, 2048), device: torch.device | str = "cpu",
                min_seconds: float = 0.25) -> dict[int, float]:
    """FLOP/s per size; the benchmark's peak is the best of them (the products at the model's own sizes
    run slower, which is part of what the efficiency ratio shows)."""
    return {n: matmul_flops(n, device, min_seconds) for n in sizes}
