"""One way to build a run: the tracker and plugins (:func:`harness.session.tracked_plugins`) and the engine.

``harness run`` (and ``--resume``), the suites, the soak worker, the benchmarks and the tests build runs here, so
they all run the same engine the same way. The engines are imported only when a run is built (the Flower one
only when chosen); the Flower Deployment server, which Flower hands its own ``Grid``, takes the tracker and
plugins from :mod:`harness.session` (importing this module from there would close a circle through
``harness.flower``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.session import tracked_plugins

if TYPE_CHECKING:
    import pluggy

    from harness.config import RunConfig
    from harness.engine import RoundEngine
    from harness.tracking import MlflowTracker
    from harness.types import RunSummary

ENGINES = ("local", "flower")


@dataclass(frozen=True)
class EngineOptions:
    """How to run: ``engine`` (local, or flower: the Simulation Engine with ``flower_workers`` client processes
    and ``client_plugins`` on every client), progress bars, ``resume`` from the newest checkpoint, and
    ``reuse_run_dir`` (a fresh run may take over an existing run directory: the suite redoing a row)."""

    engine: str = "local"
    progress: bool = True
    resume: bool = False
    flower_workers: int = 2
    client_plugins: Sequence[object] = field(default_factory=tuple)
    reuse_run_dir: bool = False


@dataclass
class Job:
    """A run ready to start: ``start()`` trains it and returns its summary."""

    tracker: MlflowTracker
    pm: pluggy.PluginManager
    start: Callable[[], RunSummary]


def prepare(cfg: RunConfig, uri: str, options: EngineOptions = EngineOptions(), run_id: str | None = None,
            extra: Sequence[object] = ()) -> Job:
    """The tracker (logging to ``uri``, continuing MLflow run ``run_id``), the plugin manager (``cfg``'s plugins,
    the tracker and the ``extra`` core plugins) and the engine that runs ``cfg`` with them."""
    tracker, pm = tracked_plugins(cfg, uri, run_id, tuple(extra))
    return Job(tracker, pm, engine_runner(cfg, pm, options))


def engine_runner(cfg: RunConfig, pm, options: EngineOptions = EngineOptions()) -> Callable[[], RunSummary]:
    """The callable that runs ``cfg`` with the plugins in ``pm`` on ``options.engine``."""
    if options.engine == "flower":
        from harness.flower import simulate

        return lambda: simulate(cfg, pm, workers=options.flower_workers, progress=options.progress,
                                client_plugins=options.client_plugins, resume=options.resume)
    if options.engine != "local":
        raise ValueError(f"unknown engine {options.engine!r}; expected one of {', '.join(ENGINES)}")
    return local_engine(cfg, pm, options).run


def local_engine(cfg: RunConfig, pm, options: EngineOptions = EngineOptions()) -> RoundEngine:
    """The single-process round engine for ``cfg`` with the plugins in ``pm``."""
    from harness.engine import RoundEngine

    return RoundEngine(cfg, pm, progress=options.progress, resume=options.resume,
                       reuse_run_dir=options.reuse_run_dir)
