"""Scale (issue #8, item 4): per-round time and peak RSS of the engine with 20, 200 and 1000 simulated
clients, 5 per round, on tiny-random. Goal: flat memory, flat round time.

The run's data is the same 2000-sample demo mixture for every client count (so only the per-client
machinery scales), each client trains 3 steps of batch 4 (the smoke preset) with FedAvg, and every round
writes its checkpoint. Round times come from one process that alternates rounds between the three
engines (same machine load for each); peak RSS from one fresh process per client count.
Run with ``pytest tests/benchmarks/test_bench_scale.py --benchmark-only -s``.
(SCAFFOLD's per-client state at these counts: ``test_bench_aggregators.py::test_peak_rss_is_flat_in_the_client_count``.)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.config import load_config
from harness.engine import RoundEngine
from tests.perf.bench import started_engine, vm_hwm_mb

REPO = Path(__file__).resolve().parents[2]
COUNTS = (20, 200, 1000)
PER_ROUND, SAMPLES = 5, 2000
STRICT = os.environ.get("HARNESS_BENCH_STRICT") == "1"


def make_engine(out: Path, num_clients: int) -> RoundEngine:
    cfg = load_config("smoke", overrides={
        "output_dir": str(out), "tracking.run_name": f"scale-{num_clients}", "plugins.evals": [],
        "federation.num_clients": num_clients, "federation.clients_per_round": PER_ROUND,
        "federation.rounds": 1000, "data.num_samples": SAMPLES,
    })
    return started_engine(cfg)


def peak_rss(num_clients: int, rounds: int = 10) -> dict[str, float]:
    """In a fresh process: set up, run ``rounds`` rounds; the process's peak RSS and median round time."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        eng = make_engine(Path(tmp), num_clients)
        setup = time.perf_counter() - start
        times = []
        for r in range(1, rounds + 1):
            t = time.perf_counter()
            eng.run_round(r)
            times.append(time.perf_counter() - t)
    return {"clients": num_clients, "setup_s": setup, "round_s": statistics.median(times[1:]),
            "peak_rss_mb": vm_hwm_mb()}


def test_round_time_and_peak_rss_are_flat_in_the_client_count(benchmark, tmp_path):
    engines = {n: make_engine(tmp_path / str(n), n) for n in COUNTS}
    times: dict[int, list[float]] = {n: [] for n in COUNTS}
    rounds = int(os.environ.get("HARNESS_BENCH_ROUNDS", "12"))
    for r in range(1, rounds + 2):
        for n, eng in engines.items():
            t = time.perf_counter()
            eng.run_round(r)
            if r > 1:
                times[n].append(time.perf_counter() - t)
    round_s = {n: statistics.median(ts) for n, ts in times.items()}
    time_spread = max(round_s.values()) / min(round_s.values()) - 1

    procs = {}
    for n in COUNTS:
        code = f"import json; from tests.benchmarks.test_bench_scale import peak_rss; print(json.dumps(peak_rss({n})))"
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        procs[n] = json.loads(done.stdout.strip().splitlines()[-1])
    rss = {n: p["peak_rss_mb"] for n, p in procs.items()}
    rss_spread = max(rss.values()) / min(rss.values()) - 1
    benchmark.extra_info.update(
        {f"round_s_{n}": v for n, v in round_s.items()} | {f"peak_rss_mb_{n}": v for n, v in rss.items()}
        | {f"setup_s_{n}": p["setup_s"] for n, p in procs.items()}
        | {"round_time_spread": time_spread, "rss_spread": rss_spread, "load_avg": os.getloadavg()[0]}
    )
    print(f"\nclients {list(COUNTS)}, {PER_ROUND} per round (load {os.getloadavg()[0]:.1f}): round s "
          + ", ".join(f"{n}: {v:.3f}" for n, v in round_s.items()) + f" (spread {time_spread:.1%}); peak RSS MB "
          + ", ".join(f"{n}: {v:.0f}" for n, v in rss.items()) + f" (spread {rss_spread:.1%}); setup s "
          + ", ".join(f"{n}: {p['setup_s']:.2f}" for n, p in procs.items()))
    benchmark.pedantic(engines[COUNTS[-1]].run_round, args=(rounds + 2,), rounds=1, iterations=1)
    assert rss_spread <= 0.10, rss
    if STRICT:
        assert time_spread <= 0.10, round_s
