"""SCAFFOLD's cost: round wall time against FedAvg, and peak RSS as the client count grows.

Run with ``pytest tests/benchmarks/test_bench_aggregators.py --benchmark-only -s``; the numbers land in
pytest-benchmark's ``extra_info`` (and are printed).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from harness.checkpoint import CheckpointStore
from tests.perf.bench import started_engine, vm_hwm_mb
from harness.types import ClientUpdate, LocalTrainInfo
from harness.default_plugins.aggregators.scaffold import Scaffold
from tests.helpers import smoke_config

REPO = Path(__file__).resolve().parents[2]


def engine(tmp: Path, agg: str, model: str):
    settings = {"plugins.agg": agg, "plugins.evals": [], "federation.local_optimizer": "sgd",
                "federation.rounds": 100, "federation.local_steps": 4, "tracking.run_name": agg}
    if model == "smollm2-135m":  # the demo preset's model and client work
        settings.update({"model.name": model, "model.max_length": 128, "model.lora_r": 16, "model.lora_alpha": 32})
    return started_engine(smoke_config(tmp / agg, **settings), agg)


@pytest.mark.parametrize("model", ["tiny-random", "smollm2-135m"])
def test_round_time_scaffold_over_fedavg(benchmark, tmp_path, model):
    """Same clients, data, steps and optimizer (sgd); rounds alternate between the two aggregators, and
    so does which of the two runs a round first."""
    engines = {agg: engine(tmp_path, agg, model) for agg in ("fedavg", "scaffold")}
    times: dict[str, list[float]] = {agg: [] for agg in engines}
    for r in range(1, 8):
        order = list(engines.items())
        for agg, eng in order if r % 2 else reversed(order):  # ABBA: neither always runs second
            start = time.perf_counter()
            eng.run_round(r)
            if r > 1:  # round 1 warms caches (tokenisation)
                times[agg].append(time.perf_counter() - start)
    medians = {agg: statistics.median(ts) for agg, ts in times.items()}
    ratio = medians["scaffold"] / medians["fedavg"]
    benchmark.extra_info.update({"model": model, "fedavg_round_s": medians["fedavg"],
                                 "scaffold_round_s": medians["scaffold"], "scaffold_over_fedavg": ratio})
    print(f"\n{model}: round fedavg {medians['fedavg']:.3f} s, scaffold {medians['scaffold']:.3f} s, ratio {ratio:.3f}")
    benchmark.pedantic(engines["scaffold"].run_round, args=(8,), rounds=1, iterations=1)


def simulate_clients(num_clients: int, per_round: int = 20) -> dict[str, float]:
    """Every client trains once through the real scaffold plugin and a real checkpoint per round;
    the adapter has SmolLM2-135M's LoRA shapes (r=16 on q_proj/v_proj, 30 layers: 0.92 M floats)."""
    shapes = {}
    for layer in range(30):
        shapes[f"l{layer}.q.A"], shapes[f"l{layer}.q.B"] = (16, 576), (576, 16)
        shapes[f"l{layer}.v.A"], shapes[f"l{layer}.v.B"] = (16, 576), (192, 16)
    x = {n: torch.zeros(s) for n, s in shapes.items()}
    params = {n: torch.nn.Parameter(torch.zeros(s)) for n, s in shapes.items()}
    info = LocalTrainInfo(steps=4, learning_rate=1e-3, mean_loss=0, num_tokens=0, step_seconds=0, padding_fraction=0)
    with tempfile.TemporaryDirectory() as tmp:
        agg = Scaffold(state_dir=f"{tmp}/live", correction="gradient")
        store = CheckpointStore(Path(tmp) / "run")
        gen = torch.Generator().manual_seed(0)
        for r, first in enumerate(range(0, num_clients, per_round), start=1):
            updates = []
            for cid in range(first, min(first + per_round, num_clients)):
                fit = agg.configure_fit(server_round=r, client_id=cid, global_state=x)
                for p in params.values():
                    p.grad = torch.randn(p.shape, generator=gen)
                agg.local_grad_correction(client_id=cid, server_round=r, params=params, global_state=x, fit_ins=fit)
                y = {n: x[n] - 1e-3 * params[n].grad for n in x}
                extra = agg.client_fit_end(client_id=cid, server_round=r, local_state=y, global_state=x,
                                           fit_ins=fit, train_info=info)
                updates.append(ClientUpdate(cid, 1, y, extra))
            x = agg.aggregate(server_round=r, global_state=x, updates=updates, num_clients_total=num_clients).state
            del updates
            store.save(r + 1, x, {}, {}, lambda d: agg.checkpoint_state(directory=d))
        files = len(agg.store.files())
    return {"clients": num_clients, "c_i_files": files,
            "peak_rss_mb": vm_hwm_mb()}


def test_peak_rss_is_flat_in_the_client_count(benchmark):
    """Fresh processes per client count, so each peak is its own; the lower of two runs per count, since one
    process's peak varies by +-50 MB from run to run whatever the count (allocator timing)."""
    peaks = {}
    for n in (20, 200, 1000):
        code = f"import json; from tests.benchmarks.test_bench_aggregators import simulate_clients as s; print(json.dumps(s({n})))"
        runs = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            assert runs[-1]["c_i_files"] == n
        peaks[n] = min(r["peak_rss_mb"] for r in runs)
    spread = max(peaks.values()) / min(peaks.values()) - 1
    benchmark.extra_info.update({f"peak_rss_mb_{n}": v for n, v in peaks.items()} | {"spread": spread})
    print(f"\npeak RSS MB by client count: {peaks}, spread {spread:.1%}")
    assert spread <= 0.10, peaks
    benchmark.pedantic(simulate_clients, args=(20,), rounds=1, iterations=1)
