"""Faults the engine pins on a plugin: which plugin to blame, and hooks that wrote into their read-only state."""

from __future__ import annotations

from harness import registry
from harness.adapters import ReadOnlyStateError, changed_tensors
from harness.types import AdapterState


def blame(exc: Exception, pm, impls: list, hook: str) -> None:
    """Attach :class:`harness.registry.PluginFault` to ``exc`` as the plugin manager does for a raising hook."""
    names = sorted({registry.plugin_origin(pm, impl.plugin) for impl in impls})
    plugin = names[0] if len(names) == 1 else "one of " + ", ".join(names) if names else "(unknown)"
    exc.plugin_fault = registry.PluginFault(plugin, hook)
    exc.add_note(str(exc.plugin_fault))


def check_read_only(pm, view: AdapterState, original: AdapterState, *hooks: str) -> None:
    """Fail the run, naming the plugin, if a hook wrote into the read-only copy ``view`` of ``original`` it got
    (``original`` is untouched: the write only reached the copy)."""
    changed = changed_tensors(view, original)
    if not changed:
        return
    exc = ReadOnlyStateError(
        f"wrote into the read-only global_state ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}) "
        f"in hook {'/'.join(hooks)}; hooks get a copy, so the global adapter is unchanged, but the plugin must "
        "return new tensors instead of writing in place")
    blame(exc, pm, [impl for hook in hooks for impl in getattr(pm.hook, hook).get_hookimpls()], "/".join(hooks))
    raise exc
