"""Two runs at once on one thread each against one after the other on all cores (a suite's runs side by side).

``python -m tests.perf.side_by_side`` times :func:`tests.perf.wait_policy.workloads` (AdvBench generation, HHH
scoring, training steps of the safe base) in child processes: twice in one child on every core, then once in each
of two children started together on half the cores each, and prints seconds per workload and the throughput
ratio. docs/performance.md ("A suite's runs side by side: not faster here") has the numbers and why the suite
still runs one job at a time. Needs ``HARNESS_DATA`` (AdvBench).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def start(threads: int, reps: int) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, "-m", "tests.perf.side_by_side", "--child", str(reps)], env=env,
                            stdout=subprocess.PIPE, text=True)


def seconds(child: subprocess.Popen) -> dict[str, float]:
    out, _ = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"child failed (exit {child.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        from tests.perf.wait_policy import workloads

        reps = [workloads() for _ in range(int(sys.argv[2]))]
        print(json.dumps({k: sum(r[k] for r in reps) for k in reps[0]}))
        return
    cores = len(os.sched_getaffinity(0))
    one_after_other = seconds(start(cores, 2))
    pair = [start(max(1, cores // 2), 1) for _ in range(2)]
    side_by_side = [seconds(child) for child in pair]
    for name, serial in one_after_other.items():
        together = max(s[name] for s in side_by_side)
        print(f"{name}: one after the other ({cores} threads) {serial:.2f} s, side by side "
              f"({max(1, cores // 2)} each) {together:.2f} s, throughput x{serial / together:.2f}", flush=True)


if __name__ == "__main__":
    main()
