"""`harness --help` and `harness plugins` answer in under a second (issue #18 item 2), measured as the wall time
of a fresh ``python -m harness ...`` process; ``python -c pass`` is reported beside it as the floor.

Run with ``pytest tests/benchmarks/test_bench_cli.py --benchmark-only -s``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

TARGET_S = 1.0


def wall(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, timeout=120)
    return time.perf_counter() - started


@pytest.mark.parametrize("args", [["--help"], ["plugins"]], ids=["help", "plugins"])
def test_cli_answers_within_a_second(benchmark, args):
    floor = statistics.median(wall(["-c", "pass"]) for _ in range(5))
    benchmark.pedantic(wall, args=(["-m", "harness", *args],), rounds=5, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(median_s=round(median, 3), python_pass_s=round(floor, 3), ratio=round(median / floor, 1))
    print(f"\nharness {' '.join(args)}: {median:.2f} s (python -c pass: {floor:.3f} s)")
    assert median < TARGET_S
