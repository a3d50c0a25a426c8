"""Set up a run's bookkeeping: the MLflow tracker and the plugin manager for a config, fresh or resumed.

:mod:`harness.runner` builds every run with these (and picks its engine); the Flower Deployment server uses
them directly, as it builds its engine from the grid Flower hands it. Light: no engine, no Flower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import registry

if TYPE_CHECKING:
    import pluggy

    from harness.config import RunConfig
    from harness.tracking import MlflowTracker


def tracked_plugins(cfg: RunConfig, uri: str, run_id: str | None = None, extra: tuple[object, ...] = (),
                    kinds: tuple[str, ...] = tuple(registry.KINDS)) -> tuple[MlflowTracker, pluggy.PluginManager]:
    """A tracker logging to ``uri`` (continuing MLflow run ``run_id`` when resuming) and a plugin manager with the
    plugins of ``kinds`` (default: all) that ``cfg`` selects, the tracker and the ``extra`` core plugins. The
    plugins are built first: a bad plugin option fails before the tracking store is created."""
    from harness.tracking import MlflowTracker

    pm = plugins(cfg, kinds=kinds)
    tracker = MlflowTracker(uri, cfg.tracking.experiment, cfg.output_dir, run_id=run_id)
    for plugin in (tracker, *extra):
        pm.register(plugin)
    return tracker, pm


def plugins(cfg: RunConfig, *extra: object, kinds: tuple[str, ...] = tuple(registry.KINDS)) -> pluggy.PluginManager:
    """A plugin manager with the plugins of ``kinds`` that ``cfg`` selects and the ``extra`` ones (untracked: a
    Flower node's client side, engine tests and benchmarks)."""
    return registry.build_manager(registry.selection(cfg, kinds), extra=list(extra))
