"""Set up a run: the MLflow tracker and the plugin manager for a config, fresh or resumed.

The one place ``harness run`` (and ``--resume``), the suites, the Flower Deployment server, the soak worker and the
tests build them, so they all get the same plugins and core plugins. (The engine is chosen by the caller: it must
not be here, as the Flower server imports this module.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import registry

if TYPE_CHECKING:
    import pluggy

    from harness.config import RunConfig
    from harness.tracking import MlflowTracker


def tracked_plugins(cfg: RunConfig, uri: str, run_id: str | None = None,
                    extra: tuple[object, ...] = ()) -> tuple[MlflowTracker, pluggy.PluginManager]:
    """A tracker logging to ``uri`` (continuing MLflow run ``run_id`` when resuming) and a plugin manager with the
    plugins ``cfg`` selects, the tracker and the ``extra`` core plugins."""
    from harness.tracking import MlflowTracker

    tracker = MlflowTracker(uri, cfg.tracking.experiment, cfg.output_dir, run_id=run_id)
    return tracker, registry.build_manager(registry.selection(cfg), extra=[tracker, *extra])
