"""Faults the engine pins on a plugin: which plugin to blame, and hooks that wrote into their read-only state or
into the live model they were lent."""

from __future__ import annotations

import hashlib

import pluggy
import torch

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
        f"wrote into the read-only global_state ({_some(changed)}) "
        f"in hook {'/'.join(hooks)}; hooks get a copy, so the global adapter is unchanged, but the plugin must "
        "return new tensors instead of writing in place")
    blame(exc, pm, [impl for hook in hooks for impl in getattr(pm.hook, hook).get_hookimpls()], "/".join(hooks))
    raise exc


def one_by_one(pm, hook: str) -> list[tuple[pluggy.HookImpl, pluggy.HookCaller]]:
    """``hook``'s implementations in pluggy's call order, each with a caller of it alone (wrappers kept), so the
    engine can check the model after each one and name the plugin that changed it."""
    impls = [i for i in getattr(pm.hook, hook).get_hookimpls() if not (i.hookwrapper or i.wrapper)]
    return [(impl, pm.subset_hook_caller(hook, [i.plugin for i in impls if i is not impl])) for impl in reversed(impls)]


def weights_digest(model: torch.nn.Module) -> dict[str, bytes]:
    """The SHA-256 of every parameter's bytes (base and adapter) by name: what a read-only hook must leave as is."""
    return {name: hashlib.sha256(_raw_bytes(p)).digest() for name, p in model.named_parameters()}


def _raw_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def check_model_unchanged(pm, impl: pluggy.HookImpl, before: dict[str, bytes], after: dict[str, bytes],
                          hook: str) -> None:
    """Fail the run, naming the plugin, if ``impl`` changed the weights of the live model it was lent
    (``before``/``after``: :func:`weights_digest` around its call)."""
    changed = [name for name in {**before, **after} if before.get(name) != after.get(name)]
    if not changed:
        return
    exc = ReadOnlyStateError(
        f"changed the weights of the model it was given ({_some(changed)}) in hook {hook}; that is the run's live "
        "model, so the run stops before this round is checkpointed: the plugin must only read the model")
    blame(exc, pm, [impl], hook)
    raise exc


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
