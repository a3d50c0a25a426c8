"""`harness --help` and `harness plugins` answer in under a second, and a smoke run's process takes at most 3 s
more than the run it reports plus its imports (issue #18 item 2): wall times of fresh ``python -m harness ...`` processes;
``python -c pass`` is reported beside them as the floor.

Run with ``pytest tests/benchmarks/test_bench_cli.py --benchmark-only -s``.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time

import pytest

TARGET_S = 1.0


def wall(args: list[str]) -> float:
    return timed(args)[0]


def timed(args: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of ``python ARGS``."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - started, done.stdout


@pytest.mark.parametrize("args", [["--help"], ["plugins"]], ids=["help", "plugins"])
def test_cli_answers_within_a_second(benchmark, args):
    floor = statistics.median(wall(["-c", "pass"]) for _ in range(5))
    benchmark.pedantic(wall, args=(["-m", "harness", *args],), rounds=5, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(median_s=round(median, 3), python_pass_s=round(floor, 3), ratio=round(median / floor, 1))
    print(f"\nharness {' '.join(args)}: {median:.2f} s (python -c pass: {floor:.3f} s)")
    assert median < TARGET_S


# What any run needs before its first step: the training stack and the MLflow store. ``python -X importtime`` of a
# smoke run shows these imports are ~85 % of the process (torch, transformers, peft ~5 s; mlflow and its sqlite
# store ~2.5 s, under load) and that nothing else of note is imported.
RUN_STACK = ("import torch, transformers, peft, mlflow; from transformers import LlamaForCausalLM; "
             "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore")


def test_smoke_run_costs_at_most_3_s_over_its_own_time_and_its_imports(benchmark, tmp_path):
    """The process of a smoke run takes at most 3 s more than the run it reports plus importing the stack it runs on.

    Issue #18 asks for 3 s over the run's own time alone. That is below what the imports take by themselves (5-8 s
    on the 2-core machine; the run's own time starts after them): no CLI can meet it while a run needs torch, peft
    and MLflow, so the floor is measured here and reported beside the CLI's own overhead (``overhead_s``). The
    second run into one output dir is timed (the first creates the MLflow store: its migrations take seconds more).
    """
    args = ["-m", "harness", "run", "--preset", "smoke", "--filter", "none", "--agg", "fedavg", "--align", "none",
            "--no-progress", "--output-dir", str(tmp_path)]
    timed(args)
    floor = statistics.median(wall(["-c", RUN_STACK]) for _ in range(3))
    total, out = benchmark.pedantic(timed, args=(args,), rounds=1, iterations=1)
    own = float(re.search(r"wall time\s+([0-9.]+) s", out).group(1))
    overhead = total - own - floor
    benchmark.extra_info.update(process_s=round(total, 2), run_s=own, imports_s=round(floor, 2),
                                over_run_s=round(total - own, 2), overhead_s=round(overhead, 2))
    print(f"\nsmoke run: process {total:.1f} s = run {own:.1f} s + imports {floor:.1f} s + CLI {overhead:.1f} s")
    assert overhead < 3.0
