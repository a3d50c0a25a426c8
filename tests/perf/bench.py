"""Shared by the benchmarks: a round engine ready for ``run_round``, and a process's own peak RSS."""

from __future__ import annotations

from pathlib import Path

from harness import registry
from harness.config import RunConfig
from harness.engine import RoundEngine
from harness.runner import EngineOptions, local_engine


def started_engine(cfg: RunConfig, agg: str = "fedavg") -> RoundEngine:
    """An engine set up and started (no filter, no aligner, ``agg``), without the run loop around it."""
    selection = [("filter", "none", {}), ("agg", agg, {}), ("align", "none", {})]
    eng = local_engine(cfg, registry.build_manager(selection), EngineOptions(progress=False))
    eng.setup()
    eng.run_dir.mkdir(parents=True)
    eng.hook.on_run_start(run=eng.run_info())
    return eng


def vm_hwm_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over ``exec`` from the
    forking parent, so a child of a large pytest process would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
